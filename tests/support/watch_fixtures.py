"""Fixtures: owned by the watch_fixtures work."""
