"""courtledger consensus package."""
