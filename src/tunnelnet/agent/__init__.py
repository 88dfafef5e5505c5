"""agent layer of tunnelnet (see ARCHITECTURE.md)."""
