"""Helpers shared by the tests: reference tools, namespaces, oracles."""
