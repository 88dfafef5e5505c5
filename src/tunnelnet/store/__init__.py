"""store layer of tunnelnet (see ARCHITECTURE.md)."""
