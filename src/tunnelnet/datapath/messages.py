"""The control-socket protocol between vswitchd and its clients (vsctl, ofctl, the agent).

One JSON object per line over a unix stream socket. A request is
``{"v": 1, "id": N, "op": "add-br", "args": {...}}``; the answer carries the same ``id`` and is
either ``{"v": 1, "id": N, "ok": true, "result": ...}`` or
``{"v": 1, "id": N, "ok": false, "error": {"kind": "...", "message": "..."}}``.

Each operation is one frozen dataclass below; ``encode``/``decode`` are the only places that
turn them into bytes and back, and ``decode`` checks every argument's name and type so the
daemon never acts on a half-understood request. ``v`` is bumped when a change is not backward
compatible; a daemon refuses a version it does not speak, naming both.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Union

from tunnelnet.datapath.errors import ProtocolError

PROTOCOL_VERSION: Final = 1
MAX_LINE: Final = 16 << 20  # a request larger than this is refused (add-flows of huge files)

JSON = Any  # a value json.loads can return


@dataclass(frozen=True, slots=True)
class Request:
    """Base of all requests; ``OP`` is the wire name."""

    OP: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class AddBridge(Request):
    OP: ClassVar[str] = "add-br"
    bridge: str
    fail_mode: str = "standalone"  # "secure": no default NORMAL flow (the agent's bridges)
    may_exist: bool = False


@dataclass(frozen=True, slots=True)
class DelBridge(Request):
    OP: ClassVar[str] = "del-br"
    bridge: str
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class AddPort(Request):
    OP: ClassVar[str] = "add-port"
    bridge: str
    port: str
    type: str = "system"
    tag: int | None = None
    ofport: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    may_exist: bool = False
    bfd: dict[str, str] = field(default_factory=dict)  # the interface's bfd column


@dataclass(frozen=True, slots=True)
class DelPort(Request):
    OP: ClassVar[str] = "del-port"
    bridge: str  # "" = whichever bridge holds the port
    port: str
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class SetPort(Request):
    """Change a port in place (the agent retags vNICs from the dead VLAN to a local VLAN).

    ``tag`` None leaves the tag as it is, ``clear_tag`` makes the port a trunk; a new tag
    forgets the MACs learned on the port (as Open vSwitch does on reconfiguration).
    ``external_ids`` None leaves them, a dict replaces them."""

    OP: ClassVar[str] = "set-port"
    bridge: str  # "" = whichever bridge holds the port
    port: str
    tag: int | None = None
    clear_tag: bool = False
    external_ids: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SetBridge(Request):
    """Set a bridge's learning caps by ``other_config`` key (mac-table-size per VLAN,
    mac-aging-time, learn-flow-limit: ``datapath/learning_config.py``); all or nothing."""

    OP: ClassVar[str] = "set-bridge"
    bridge: str
    other_config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SetInterface(Request):
    """Set keys of an interface's ``bfd`` column (``replace``: the whole column, so an empty
    ``bfd`` with ``replace`` clears it), as ``ovs-vsctl set/clear Interface X bfd...``."""

    OP: ClassVar[str] = "set-interface"
    interface: str
    bfd: dict[str, str] = field(default_factory=dict)
    replace: bool = False


@dataclass(frozen=True, slots=True)
class ListInterfaces(Request):
    """Interfaces as ``ovs-vsctl list Interface`` shows them (name, type, ofport, options,
    bfd, bfd_status, statistics, ...); ``interface`` "" for all, sorted by name."""

    OP: ClassVar[str] = "list-interface"
    interface: str = ""


@dataclass(frozen=True, slots=True)
class BfdShow(Request):
    """What ``ovs-appctl bfd/show`` tells of each BFD session (or one interface's): the
    bfd_status keys, intervals, discriminators, counters, and ages of the last state change
    and of the last packet received."""

    OP: ClassVar[str] = "bfd-show"
    interface: str = ""


@dataclass(frozen=True, slots=True)
class ListBridges(Request):
    OP: ClassVar[str] = "list-br"


@dataclass(frozen=True, slots=True)
class ListPorts(Request):
    """Ports of a bridge, each as in Show (name, ofport, type, tag, options, external_ids,
    statistics), sorted by name."""

    OP: ClassVar[str] = "list-ports"
    bridge: str


@dataclass(frozen=True, slots=True)
class Show(Request):
    """The whole configuration with counters (result: list of bridge dicts)."""

    OP: ClassVar[str] = "show"


@dataclass(frozen=True, slots=True)
class AddFlows(Request):
    OP: ClassVar[str] = "add-flows"
    bridge: str
    flows: list[str]  # all or nothing


@dataclass(frozen=True, slots=True)
class ModFlows(Request):
    OP: ClassVar[str] = "mod-flows"
    bridge: str
    flow: str
    strict: bool = False


@dataclass(frozen=True, slots=True)
class DelFlows(Request):
    OP: ClassVar[str] = "del-flows"
    bridge: str
    match: str = ""
    strict: bool = False


@dataclass(frozen=True, slots=True)
class DumpFlows(Request):
    OP: ClassVar[str] = "dump-flows"
    bridge: str
    match: str = ""
    stats: bool = True


@dataclass(frozen=True, slots=True)
class DumpPorts(Request):
    OP: ClassVar[str] = "dump-ports"
    bridge: str
    port: str | None = None


@dataclass(frozen=True, slots=True)
class TraceFlow(Request):
    OP: ClassVar[str] = "trace"
    bridge: str
    flow: str
    explain: bool = False  # the text form says why each table did what it did


@dataclass(frozen=True, slots=True)
class DumpDrops(Request):
    """Drops by reason: the daemon's own (unknown tunnel peer, bad packet) and per bridge."""

    OP: ClassVar[str] = "dump-drops"
    bridge: str | None = None


@dataclass(frozen=True, slots=True)
class FdbShow(Request):
    """What a bridge has learned and what its caps refused (`ovs-appctl fdb/show` and
    `fdb/stats-show` in one): NORMAL's MAC table with its count per VLAN, and learn()'s
    flows per (table, VLAN)."""

    OP: ClassVar[str] = "fdb-show"
    bridge: str


@dataclass(frozen=True, slots=True)
class DatapathStats(Request):
    """How packets went through the datapath (like `ovs-appctl dpif/show`): result is
    {"plans", "plans_made", "packets_followed", "packets_walked"}."""

    OP: ClassVar[str] = "dp-stats"


@dataclass(frozen=True, slots=True)
class Ping(Request):
    """Liveness and identity: result is {"pid", "version", "protocol"}."""

    OP: ClassVar[str] = "ping"


REQUESTS: Final[dict[str, type[Request]]] = {
    cls.OP: cls
    for cls in (AddBridge, DelBridge, AddPort, DelPort, SetPort, SetInterface, ListInterfaces,
                BfdShow, ListBridges, ListPorts, Show,
                AddFlows, ModFlows, DelFlows, DumpFlows, DumpPorts, TraceFlow, DumpDrops,
                DatapathStats, Ping, SetBridge, FdbShow)
}


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    result: JSON


@dataclass(frozen=True, slots=True)
class ErrorReply:
    id: int
    kind: str  # the daemon-side exception class, e.g. "FlowSyntaxError"
    message: str


Response = Union[Reply, ErrorReply]  # noqa: UP007 - a runtime alias, | would need 3.10 types


def encode_request(request: Request, request_id: int) -> bytes:
    args = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    body = {"v": PROTOCOL_VERSION, "id": request_id, "op": request.OP, "args": args}
    return _line(body)


def decode_request(line: bytes) -> tuple[int, Request]:
    """Bytes of one line -> (id, request). Raises ProtocolError naming the bad part, carrying
    the request's id when it could be read, so the answer can carry it."""
    body = _object(line)
    request_id = _id_of(body)
    try:
        _check_version(body)
        op = body.get("op")
        cls = REQUESTS.get(op) if isinstance(op, str) else None
        if cls is None:
            raise ProtocolError(f"unknown operation {op!r} (known: {', '.join(sorted(REQUESTS))})")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ProtocolError(f"{op}: 'args' must be an object")
        return request_id, _build(cls, args)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), request_id) from None


def encode_response(response: Response) -> bytes:
    if isinstance(response, Reply):
        body = {"v": PROTOCOL_VERSION, "id": response.id, "ok": True, "result": response.result}
    else:
        body = {"v": PROTOCOL_VERSION, "id": response.id, "ok": False,
                "error": {"kind": response.kind, "message": response.message}}
    return _line(body)


def decode_response(line: bytes) -> Response:
    body = _object(line)
    request_id = _id_of(body)
    _check_version(body)
    ok = body.get("ok")
    if ok is True:
        return Reply(request_id, body.get("result"))
    if ok is False:
        error = body.get("error")
        if (not isinstance(error, dict) or not isinstance(error.get("kind"), str)
                or not isinstance(error.get("message"), str)):
            raise ProtocolError("error response without a kind and message")
        return ErrorReply(request_id, error["kind"], error["message"])
    raise ProtocolError("response has no boolean 'ok'")


def _line(body: dict[str, JSON]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes) -> dict[str, JSON]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes is larger than {MAX_LINE}")
    try:
        body = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("message is not a JSON object")
    return body


def _id_of(body: dict[str, JSON]) -> int:
    request_id = body.get("id", 0)
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise ProtocolError("'id' must be an integer")
    return request_id


def _check_version(body: dict[str, JSON]) -> None:
    version = body.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})"
        )


def _build(cls: type[Request], args: dict[str, JSON]) -> Request:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ProtocolError(f"{cls.OP}: unknown argument(s) {', '.join(unknown)}")
    values: dict[str, JSON] = {}
    for name, fld in known.items():
        if name not in args:
            no_default = (fld.default is dataclasses.MISSING
                          and fld.default_factory is dataclasses.MISSING)
            if no_default:
                raise ProtocolError(f"{cls.OP}: missing argument {name!r}")
            continue
        if not _is_instance(args[name], hints[name]):
            raise ProtocolError(
                f"{cls.OP}: argument {name!r} has the wrong type ({type(args[name]).__name__})"
            )
        values[name] = args[name]
    return cls(**values)


def _is_instance(value: JSON, hint: Any) -> bool:
    """The few argument types the requests use: str, int, bool, None, list[str], dict[str,str]."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_is_instance(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _is_instance(k, key_t) and _is_instance(v, val_t) for k, v in value.items()
        )
    raise TypeError(f"unsupported argument type {hint!r}")  # a bug in this module, not input
