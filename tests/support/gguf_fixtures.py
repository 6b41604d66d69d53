"""Fixtures: owned by the gguf_fixtures work."""
