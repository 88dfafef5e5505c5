"""The ``tunnelnet`` command, one module per command group."""
