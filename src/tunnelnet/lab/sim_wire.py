"""How the lab commands talk to a simulated lab held by another process (``lab up --sim``).

One request and one reply per connection to the unix socket ``sim.sock`` in the lab's run
directory, each one JSON line, as small typed records with one encode and one decode. Both the
sim server (:mod:`tunnelnet.lab.sim_server`) and its clients (the simulated
:class:`~tunnelnet.lab.interface.Lab`, the trace's :mod:`tunnelnet.trace.sim_remote`) import
this module; it imports neither of them.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tunnelnet.lab.sim import SimError, SimInputError

SOCKET_NAME: Final = "sim.sock"
VERSION: Final = 1
MAX_REQUEST: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class SimRequest:
    op: str
    args: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"v": VERSION, "op": self.op, "args": self.args}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SimRequest:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise SimError(f"request is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION or \
                not isinstance(data.get("op"), str) or not isinstance(data.get("args", {}), dict):
            raise SimError(f"request is not a version {VERSION} sim request")
        return cls(data["op"], dict(data.get("args", {})))


@dataclass(frozen=True, slots=True)
class SimReply:
    ok: bool
    result: Any = None
    error: str = ""
    bad_input: bool = False  # the error is the request's fault (the command's usage error)

    def encode(self) -> bytes:
        return json.dumps({"v": VERSION, "ok": self.ok, "result": self.result,
                           "error": self.error, "input": self.bad_input}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SimReply:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise SimError(f"reply is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise SimError(f"reply is not a version {VERSION} sim reply")
        return cls(bool(data.get("ok")), data.get("result"), str(data.get("error", "")),
                   bool(data.get("input", False)))


class SimClient:
    def __init__(self, directory: Path, timeout: float = 600.0) -> None:
        self.path = directory / SOCKET_NAME
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(SimRequest(op, args).encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            raise SimError(f"the simulated lab at {self.path} does not answer ({exc}); "
                           "'tunnelnet lab down' clears its record") from None
        if not data:
            raise SimError(f"the simulated lab at {self.path} closed the connection without "
                           f"an answer; its log is {self.path.parent / 'sim.log'}")
        reply = SimReply.decode(data)
        if not reply.ok:
            raise (SimInputError if reply.bad_input else SimError)(reply.error)
        return reply.result
