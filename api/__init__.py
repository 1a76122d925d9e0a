"""courtledger api package."""
