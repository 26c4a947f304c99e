"""Fixtures for ews tests (filled in by the ews work)."""
