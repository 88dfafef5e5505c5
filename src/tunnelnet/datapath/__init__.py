"""datapath layer of tunnelnet (see ARCHITECTURE.md)."""
