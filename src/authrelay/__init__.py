"""authrelay."""
