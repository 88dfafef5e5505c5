"""lab layer of tunnelnet (see ARCHITECTURE.md)."""
