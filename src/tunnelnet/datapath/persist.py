"""The daemon's configuration kept on disk, as Open vSwitch keeps it in ovsdb.

Bridges (with their learning caps) and ports (type, number, tag, options, external_ids)
survive a restart of vswitchd, as in Open vSwitch. Flows are not configuration: they are
flow_snapshot.py's, put back only where still true; without them a fail-secure bridge drops
until its agent programs it again, and a standalone one starts with its NORMAL flow. Without
this, a restart would lose the VMs' vNIC ports that Nova (or the lab) plugged, which no
agent can know how to plug again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tunnelnet.datapath import learning_config
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.errors import TunnelnetError

log = logging.getLogger(__name__)

CONFIG_NAME = "conf.json"
VERSION = 1


def snapshot(board: Switchboard) -> dict[str, Any]:
    bridges = []
    for name in sorted(board.bridges):
        state = board.bridges[name]
        ports = []
        for number in sorted(state.ports):
            port = state.ports[number]
            described = port.describe()
            ports.append({"name": port.name, "type": described["type"], "ofport": number,
                          "tag": state.bridge.port(port.name).tag,
                          "options": described["options"],
                          "external_ids": dict(state.external_ids.get(port.name, {})),
                          "bfd": dict(getattr(port, "bfd_column", {}))})
        bridges.append({"name": name, "fail_mode": state.fail_mode, "ports": ports,
                        "other_config": learning_config.describe(state.bridge)})
    return {"version": VERSION, "bridges": bridges}


def write_json_atomically(path: Path, data: object, *, indent: int | None = None) -> None:
    """A crash leaves the previous file or this one, never half of either."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)


def read_versioned(path: Path, version: int, what: str, otherwise: str
                   ) -> dict[str, Any] | None:
    """The JSON object ``path`` holds if it is of ``version``; None when the file is missing,
    and, logged as "``what`` ...: ``otherwise``", when it is unreadable or of another version:
    a daemon starting never dies of its own saved state."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("%s %s unreadable (%s): %s", what, path, exc, otherwise)
        return None
    if not isinstance(data, dict) or data.get("version") != version:
        found = data.get("version") if isinstance(data, dict) else None
        log.error("%s %s has version %r, not %d: %s", what, path, found, version, otherwise)
        return None
    return data


def save(board: Switchboard, path: Path) -> None:
    write_json_atomically(path, snapshot(board), indent=1)


def restore(board: Switchboard, path: Path) -> int:
    """Re-create what ``path`` records; a port that cannot come back (its interface is gone)
    is logged and left out, never fatal. Returns the number of ports restored."""
    data = read_versioned(path, VERSION, "configuration", "starting empty")
    if data is None:
        return 0
    restored = 0
    bridges = data.get("bridges", [])
    for bridge in bridges:
        board.add_bridge(bridge["name"], bridge.get("fail_mode", "standalone"), may_exist=True)
        try:
            learning_config.apply(board.bridge(bridge["name"]).bridge,
                                  learning_config.parse(bridge.get("other_config") or {}))
        except TunnelnetError as exc:
            log.warning("learning caps of %s not restored: %s", bridge["name"], exc)
    for bridge in bridges:
        for port in bridge.get("ports", []):
            try:
                board.add_port(bridge["name"], port["name"], PortKind.parse(port["type"]),
                               tag=port.get("tag"), ofport=port.get("ofport"),
                               options=port.get("options") or {},
                               external_ids=port.get("external_ids") or {}, may_exist=True,
                               bfd=port.get("bfd") or {})
                restored += 1
            except (TunnelnetError, OSError, KeyError) as exc:
                log.warning("port %s of %s not restored: %s", port.get("name"),
                            bridge.get("name"), exc)
    log.info("restored %d bridges and %d ports from %s", len(bridges), restored, path)
    return restored
