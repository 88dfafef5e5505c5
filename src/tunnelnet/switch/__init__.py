"""switch layer of tunnelnet (see ARCHITECTURE.md)."""
