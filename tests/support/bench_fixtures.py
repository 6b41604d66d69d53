"""Fixtures: owned by the bench_fixtures work."""
