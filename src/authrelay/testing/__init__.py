"""Test helpers: a strict in-process identity provider and loopback servers."""
