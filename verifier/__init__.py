"""courtledger verifier package."""
