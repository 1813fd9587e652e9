"""Fixtures of the end-to-end tests: the integration tests' operator subprocess."""

from tests.integration.conftest import operator

__all__ = ["operator"]
