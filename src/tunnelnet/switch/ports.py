"""OpenFlow port numbers and names (OpenFlow 1.0 numbering, as ``ovs-ofctl`` prints them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from tunnelnet.switch.errors import FlowSyntaxError

OFPP_MAX: Final = 0xFF00
OFPP_IN_PORT: Final = 0xFFF8
OFPP_TABLE: Final = 0xFFF9
OFPP_NORMAL: Final = 0xFFFA
OFPP_FLOOD: Final = 0xFFFB
OFPP_ALL: Final = 0xFFFC
OFPP_CONTROLLER: Final = 0xFFFD
OFPP_LOCAL: Final = 0xFFFE
OFPP_NONE: Final = 0xFFFF

RESERVED_NAMES: Final[dict[int, str]] = {
    OFPP_IN_PORT: "IN_PORT",
    OFPP_TABLE: "TABLE",
    OFPP_NORMAL: "NORMAL",
    OFPP_FLOOD: "FLOOD",
    OFPP_ALL: "ALL",
    OFPP_CONTROLLER: "CONTROLLER",
    OFPP_LOCAL: "LOCAL",
    OFPP_NONE: "NONE",
}
_BY_NAME: Final[dict[str, int]] = {v: k for k, v in RESERVED_NAMES.items()}

# Resolves a port name to its ofport, or None when the bridge has no such port.
PortResolver = Callable[[str], "int | None"]


def no_names(_name: str) -> int | None:
    return None


def parse_port(text: str, resolve: PortResolver, *, what: str = "port") -> int:
    """A port as ``ovs-ofctl`` accepts it: a number, a reserved name (LOCAL, IN_PORT...) or,
    when the bridge knows it, a port name. OpenFlow 1.1 numbers of reserved ports (0xfffffff8..)
    are folded onto the 1.0 ones, as Open vSwitch does."""
    t = text.strip()
    upper = t.upper()
    if upper in _BY_NAME:
        return _BY_NAME[upper]
    if t.isdigit() or t.lower().startswith("0x"):
        try:
            value = int(t, 0)
        except ValueError:
            raise FlowSyntaxError(f"{what} {text!r}: not a port number") from None
        if 0xFFFFFF00 <= value <= 0xFFFFFFFF:
            value -= 0xFFFF0000
        if value > 0xFFFF:
            raise FlowSyntaxError(f"{what} {text!r}: port number out of range")
        if OFPP_MAX <= value < OFPP_IN_PORT:
            raise FlowSyntaxError(f"{what} {text!r}: reserved port number not supported")
        return value
    found = resolve(t)
    if found is None:
        raise FlowSyntaxError(f"{what} {text!r}: no such port on this bridge")
    return found


def format_port(port: int) -> str:
    return RESERVED_NAMES.get(port, str(port))
