"""Project scripts (demo, test runner helpers, generators of committed data)."""
