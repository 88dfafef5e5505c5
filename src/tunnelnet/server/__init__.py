"""server layer of tunnelnet (see ARCHITECTURE.md)."""
