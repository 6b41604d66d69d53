"""Fixtures: owned by the t5_fixtures work."""
