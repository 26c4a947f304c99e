"""Fixtures for radicale tests (filled in by the radicale work)."""
