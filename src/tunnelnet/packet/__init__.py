"""packet layer of tunnelnet (see ARCHITECTURE.md)."""
