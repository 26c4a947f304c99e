"""Fixtures for samba tests (filled in by the samba work)."""
