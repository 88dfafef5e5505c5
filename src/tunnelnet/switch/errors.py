"""Errors of the switch layer: one hierarchy, each message names the bad part."""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class SwitchError(TunnelnetError):
    """A request to a bridge that cannot be done (duplicate port, unknown port, ...)."""


class FlowSyntaxError(SwitchError):
    """Flow, match or action text that we refuse; the message names the offending part."""
