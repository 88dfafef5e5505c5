"""Errors of the trace package."""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class TraceError(TunnelnetError):
    """A journey cannot be traced (unknown VM, lab not up, switch not answering...)."""
