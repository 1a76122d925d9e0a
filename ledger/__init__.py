"""courtledger ledger package."""
