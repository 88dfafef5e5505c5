"""The agent's switch backend for our own vswitchd, through its control socket.

One connection is kept and reopened after any failure, so a vswitchd restart shows up as one
failed round (after which the agent reprograms everything), never as a stuck agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunnelnet.agent.backend import BackendError, SwitchPort
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.errors import TunnelnetError


class VswitchdBackend:
    def __init__(self, rundir: Path, *, timeout: float = 10.0) -> None:
        self.rundir = rundir
        self.timeout = timeout
        self._client: ControlClient | None = None

    def _call(self, request: m.Request) -> Any:
        try:
            if self._client is None:
                self._client = ControlClient(self.rundir, timeout=self.timeout)
            return self._client.call(request)
        except TunnelnetError as exc:
            if self._client is not None:
                self._client.close()
                self._client = None
            raise BackendError(f"vswitchd at {self.rundir}: {exc}") from exc
        except OSError as exc:
            self._client = None
            raise BackendError(f"vswitchd at {self.rundir}: {exc}") from exc

    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None:
        self._call(m.AddBridge(bridge, fail_mode="secure" if fail_secure else "standalone",
                               may_exist=True))

    def list_bridges(self) -> list[str]:
        return [str(b) for b in self._call(m.ListBridges())]

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return [SwitchPort(name=p["name"], ofport=int(p["ofport"]),
                           type=str(p.get("type", "system")), tag=p.get("tag"),
                           options=dict(p.get("options") or {}),
                           external_ids=dict(p.get("external_ids") or {}),
                           bfd=dict(p.get("bfd") or {}), bfd_status=dict(p.get("bfd_status") or {}))
                for p in self._call(m.ListPorts(bridge))]

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int:
        result = self._call(m.AddPort(bridge, name, type=type, options=dict(options or {}),
                                      may_exist=True))
        return int(result)

    def del_port(self, bridge: str, name: str) -> None:
        self._call(m.DelPort(bridge, name, if_exists=True))

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        self._call(m.SetPort(bridge, name, tag=tag))

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        self._call(m.SetInterface(name, bfd=dict(column), replace=True))

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None:
        if flows:
            self._call(m.AddFlows(bridge, list(flows)))

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        self._call(m.DelFlows(bridge, match, strict=strict))

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        match = "" if table is None else f"table={table}"
        return [str(line) for line in self._call(m.DumpFlows(bridge, match=match))]
