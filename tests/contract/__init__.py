"""The shared target contract suite (see README.md)."""
