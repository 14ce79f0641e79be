"""HTTP endpoints of the test identity provider, one module per concern."""
