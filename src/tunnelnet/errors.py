"""The root of every exception tunnelnet raises on purpose.

Each layer subclasses it (``PacketError``, ``FlowSyntaxError``, ...). The CLI turns any of them
into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class TunnelnetError(Exception):
    """An error whose message is meant for the user as it is."""
