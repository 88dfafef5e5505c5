"""The agent's switch backend for a real Open vSwitch, through ovs-vsctl and ovs-ofctl.

Bridges are made with ``fail_mode=secure`` so a restarted switch drops rather than floods
across tenants, and with ``datapath_type`` as configured (``netdev`` here, where there is no
kernel module; ``system`` on ordinary hypervisors).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence

from tunnelnet.agent.backend import BackendError, SwitchPort

_TIMEOUT = 10.0


class OvsBackend:
    def __init__(self, rundir: str | None = None, *, datapath_type: str = "netdev") -> None:
        """``rundir``: the run directory of an Open vSwitch started on its own (its
        ``db.sock`` and ``BRIDGE.mgmt`` sockets live there); None for the system's."""
        self._rundir = rundir
        self._datapath_type = datapath_type

    def _run(self, cmd: list[str], stdin: str | None = None) -> str:
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                  timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{cmd[0]}: {exc}") from exc
        if proc.returncode != 0:
            raise BackendError(f"{' '.join(cmd[:3])}: {proc.stderr.strip()}")
        return proc.stdout

    def _vsctl(self, *args: str) -> str:
        db = [f"--db=unix:{self._rundir}/db.sock"] if self._rundir else []
        return self._run(["ovs-vsctl", f"--timeout={int(_TIMEOUT)}", *db, *args])

    def _target(self, bridge: str) -> str:
        # the explicit management socket never reaches another instance's bridge of that name
        return f"unix:{self._rundir}/{bridge}.mgmt" if self._rundir else bridge

    def _ofctl(self, verb: str, bridge: str, *args: str, stdin: str | None = None) -> str:
        return self._run(["ovs-ofctl", verb, self._target(bridge), *args], stdin=stdin)

    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None:
        settings = [f"datapath_type={self._datapath_type}"]
        if fail_secure:
            settings.append("fail_mode=secure")
        self._vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge, *settings)

    def list_bridges(self) -> list[str]:
        return self._vsctl("list-br").split()

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        names = self._vsctl("list-ports", bridge).split()
        if not names:
            return []
        raw = self._vsctl("--format=json",
                          "--columns=name,ofport,type,options,external_ids,bfd,bfd_status",
                          "list", "Interface", *names)
        ifaces = {row[0]: row for row in json.loads(raw)["data"]}
        tags = self._port_tags(names)
        ports = []
        for name in names:
            row = ifaces.get(name)
            if row is None:
                continue
            ofport = row[1] if isinstance(row[1], int) else -1
            ports.append(SwitchPort(name=name, ofport=ofport, type=row[2] or "system",
                                    tag=tags.get(name), options=_ovs_map(row[3]),
                                    external_ids=_ovs_map(row[4]), bfd=_ovs_map(row[5]),
                                    bfd_status=_ovs_map(row[6])))
        return ports

    def _port_tags(self, names: Sequence[str]) -> dict[str, int]:
        raw = self._vsctl("--format=json", "--columns=name,tag", "list", "Port", *names)
        tags: dict[str, int] = {}
        for name, tag in json.loads(raw)["data"]:
            if isinstance(tag, int):
                tags[name] = tag
        return tags

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int:
        settings = [f"type={type}", *(f"options:{k}={v}" for k, v in (options or {}).items())]
        self._vsctl("--may-exist", "add-port", bridge, name, "--", "set", "Interface", name,
                    *settings)
        ofport = self._vsctl("get", "Interface", name, "ofport").strip()
        try:
            return int(ofport)
        except ValueError as exc:
            raise BackendError(f"port {name} on {bridge} has no OpenFlow port number") from exc

    def del_port(self, bridge: str, name: str) -> None:
        self._vsctl("--if-exists", "del-port", bridge, name)

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        self._vsctl("set", "Port", name, f"tag={tag}")

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        if column:
            self._vsctl("clear", "Interface", name, "bfd", "--", "set", "Interface", name,
                        *(f"bfd:{k}={v}" for k, v in sorted(column.items())))
        else:
            self._vsctl("clear", "Interface", name, "bfd")

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None:
        if flows:
            self._ofctl("add-flows", bridge, "-", stdin="\n".join(flows) + "\n")

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        args = ["--strict"] if strict else []
        self._run(["ovs-ofctl", *args, "del-flows", self._target(bridge), match])

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        out = self._ofctl("dump-flows", bridge, *([] if table is None else [f"table={table}"]))
        return [line.strip() for line in out.splitlines()
                if line.strip() and not line.startswith(("NXST_FLOW", "OFPST_FLOW"))]


def _ovs_map(value: object) -> dict[str, str]:
    """ovsdb JSON ``["map", [[k, v], ...]]`` -> dict."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): str(v) for k, v in value[1]}
    return {}
