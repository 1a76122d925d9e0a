"""courtledger node package."""
