"""agent layer of tunnelnet (see docs/architecture.md)."""
