"""Real servers for the tests, started privately on 127.0.0.1 (see tests/conftest.py)."""
