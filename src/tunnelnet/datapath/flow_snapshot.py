"""The flow tables kept on disk, so that a vswitchd restarted after a crash forwards at once.

Open vSwitch keeps forwarding through ovs-vswitchd's death in its kernel datapath, and keeps
flows across a restart when asked (``ovs-save``); without either, a fail-secure bridge drops
everything until its agent programs it again. vswitchd writes its bridges' flows to
RUNDIR/flows.json whenever they or its ports change (atomically, at most once per
``INTERVAL``) and a restart puts them back before the control socket listens.

What is put back is only what was true of the same ports. A stale snapshot (the last write
can be up to ``INTERVAL`` older than the configuration, which is saved at every change) is
unsafe where a flow's port number now means another port, or where a port is on a local VLAN
that the snapshot's tunnel flows may map to another network (a network left the host and
another took its VLAN after the last write). So each snapshot carries the port records it was
true of (name, number, type, tag, options, external_ids):

- any port now on a bridge whose record is not in the snapshot (new, renumbered, retagged,
  re-identified): nothing is restored anywhere; every bridge stays as the fail mode leaves it;
- a port of the snapshot that did not come back: the flows that name its number are left out
  (the number is free, a later port could take it); a port that is gone carries no traffic,
  so no other flow changes meaning;
- learned flows and flows with timeouts are left out: traffic learns them again, and a
  restored one would outlive what it was learned from.

Restored flows keep their cookies: they are the agent's previous generation, which the agent
replaces and sweeps when it finds its connection to the switch broken (agent/service.py),
exactly as after any failed request. Nothing here adds a flow the agent did not install, so
fail-secure bridges are never given NORMAL by this module.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Final

from tunnelnet.datapath import parsed_flows, persist
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.errors import TunnelnetError
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.flow_format import format_flow

log = logging.getLogger(__name__)

SNAPSHOT_NAME: Final = "flows.json"
VERSION: Final = 1
# seconds between writes while the agent programs: a write of 3,000 flows takes about 50 ms
# of the loop's time; staleness costs completeness only (the port check keeps it safe)
INTERVAL: Final = 0.5
# the ways a flow names a port by number (match, output, resubmit, enqueue, a load into it)
_PORT_NUMBER = re.compile(r"(?:\bin_port=|\boutput:|\bresubmit\(|\bresubmit:|\benqueue:)"
                          r"(\d+)|\b(\d+|0x[0-9a-fA-F]+)->(?:in_port|NXM_OF_IN_PORT)\b")


def _kept(entry: FlowEntry) -> bool:
    return not entry.learned and not entry.idle_timeout and not entry.hard_timeout


def _kept_flows(board: Switchboard, bridge: str) -> list[tuple[str, FlowEntry]]:
    return [(format_flow(e, stats=False, now=0.0), e)
            for e in board.bridge(bridge).bridge.flows() if _kept(e)]


def snapshot(board: Switchboard) -> dict[str, Any]:
    """The flows of every bridge (without counters) with the port records they hold for."""
    return _snapshot(board, {name: _kept_flows(board, name) for name in board.bridges})


def _snapshot(board: Switchboard, kept: dict[str, list[tuple[str, FlowEntry]]]
              ) -> dict[str, Any]:
    config = persist.snapshot(board)
    bridges = [{"name": bridge["name"], "ports": bridge["ports"],
                "flows": [line for line, _ in kept[bridge["name"]]]}
               for bridge in config["bridges"]]
    return {"version": VERSION, "bridges": bridges}


def parsed_path(path: Path) -> Path:
    """Where the parsed form of the snapshot at ``path`` is kept (parsed_flows.py)."""
    return path.with_name(parsed_flows.PARSED_NAME)


def save(board: Switchboard, path: Path) -> None:
    """The snapshot and, beside it, its parsed form (used only with the lines it was made
    from, so a crash between the two writes costs parsing, never a wrong flow)."""
    kept = {name: _kept_flows(board, name) for name in board.bridges}
    parsed_flows.save(parsed_path(path), kept)
    persist.write_json_atomically(path, _snapshot(board, kept))


def ports_named(flow: str) -> set[int]:
    """The port numbers a flow line names."""
    return {int(a or b, 0) for a, b in _PORT_NUMBER.findall(flow)}


def plan(saved: dict[str, Any], current: dict[str, Any]) -> tuple[dict[str, list[str]], str]:
    """Which flows may go back on which bridge, given the snapshot and the restored
    configuration (both as persist.snapshot gives them); the second item says why any
    were left out ("" when none were)."""
    now = {b["name"]: {p["ofport"]: p for p in b["ports"]} for b in current["bridges"]}
    then = {b["name"]: {p["ofport"]: p for p in b["ports"]} for b in saved["bridges"]}
    for bridge, ports in now.items():
        for number, port in ports.items():
            if then.get(bridge, {}).get(number) != port:
                return {}, (f"port {port['name']} (ofport {number}) of {bridge} is not as the "
                            "snapshot knew it: restoring no flow")
    restored: dict[str, list[str]] = {}
    notes = []
    for bridge in saved["bridges"]:
        name = bridge["name"]
        if name not in now:
            notes.append(f"bridge {name} is gone")
            continue
        gone = set(then[name]) - set(now[name])
        flows = [f for f in bridge["flows"] if not ports_named(f) & gone]
        if gone:
            notes.append(f"{len(bridge['flows']) - len(flows)} flows of {name} name ports "
                         f"that did not come back ({', '.join(map(str, sorted(gone)))})")
        restored[name] = flows
    return restored, "; ".join(notes)


def of_configuration(path: Path, config_path: Path) -> bool:
    """Whether the snapshot at ``path`` was written for the ports the configuration at
    ``config_path`` records (bridge by bridge, the same port records): then, when those
    ports come back, ``restore`` puts back all its flows (but those of ports that did not).
    Neither file is judged otherwise; a missing or unreadable one answers False."""
    try:
        flows = json.loads(path.read_text())
        config = json.loads(config_path.read_text())
        ports = {b["name"]: b["ports"] for b in config["bridges"]}
        return bool(flows["bridges"]) and all(
            ports.get(b["name"]) == b["ports"] for b in flows["bridges"]) and \
            len(ports) == len(flows["bridges"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def restore(board: Switchboard, path: Path) -> int:
    """Put back what ``path`` may safely give (see the module's doc) on the restored bridges;
    returns the number of flows restored. A bad snapshot restores nothing and is never
    fatal: the bridges then start as their fail mode says, as without a snapshot."""
    saved = persist.read_versioned(path, VERSION, "flow snapshot", "restoring no flow")
    if saved is None:
        return 0
    try:
        flows, why = plan(saved, persist.snapshot(board))
    except (KeyError, TypeError) as exc:
        log.error("flow snapshot %s malformed (%s): restoring no flow", path, exc)
        return 0
    if why:
        log.warning("flow snapshot %s: %s", path, why)
    parsed = parsed_flows.load(parsed_path(path),
                               {b["name"]: b["flows"] for b in saved["bridges"]})
    restored = 0
    for name, lines in flows.items():
        bridge = board.bridge(name).bridge
        try:  # all or nothing per bridge; a line without its parsed form is parsed
            restored += bridge.add_flows(lines, known=parsed.get(name))
        except TunnelnetError as exc:
            log.error("flows of %s not restored: %s", name, exc)
    log.info("restored %d flows on %d bridges from %s", restored, len(flows), path)
    return restored


class SnapshotWriter:
    """Writes the snapshot a moment after flows or ports change: at most once per
    ``interval``, and always once after the last change."""

    def __init__(self, board: Switchboard, loop: EventLoop, path: Path,
                 interval: float = INTERVAL) -> None:
        self.board = board
        self.loop = loop
        self.path = path
        self.interval = interval
        self._due = False
        self._last = float("-inf")
        self.writes = 0

    def changed(self) -> None:
        if self._due:
            return
        self._due = True
        self.loop.call_at(max(self.loop.now(), self._last + self.interval), self._write)

    def _write(self) -> None:
        self._due = False
        self._last = self.loop.now()
        try:
            save(self.board, self.path)
            self.writes += 1
        except OSError as exc:  # a full disk must not stop the switch; the next change retries
            log.error("flow snapshot %s not written: %s", self.path, exc)
