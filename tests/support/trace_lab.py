"""The demo lab that `tunnelnet trace` is held to the wire on (test_trace.py, test_trace_arp.py,
test_trace_ovs.py): the topology's facts the tests expect, the lab brought up warm, and the
readers of a trace and of a capture.

The three modules share one namespace prefix of their own, so other labs on the machine
neither stop nor disturb theirs; they bring their labs up one after the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.lab_cli import run_lab, running_lab
from support.tools import require_tool

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"
TOPO = tomllib.loads(DEMO.read_text())
HV_IP = {h["name"]: h["ip"] for h in TOPO["hypervisor"]}
SEGMENT = {n["name"]: n["segment"] for n in TOPO["network"]}
VM = {v["name"]: v for v in TOPO["vm"]}
PREFIX = f"ttr{os.getpid() % 10000}"


def tn(lab_dir: Path, command: str, *args: str, timeout: float = 120
       ) -> subprocess.CompletedProcess[str]:
    """``tunnelnet COMMAND ARGS`` for the trace lab in ``lab_dir``."""
    return run_lab(PREFIX, lab_dir, *args, command=command, timeout=timeout)


@contextmanager
def trace_lab(topology: Path, directory: Path, *up_options: str) -> Iterator[Path]:
    """The lab up and warmed up for the block; down (and checked gone) after it."""
    require_tool("tcpdump")
    with running_lab(PREFIX, topology, directory, *up_options):
        warm_up(directory)
        yield directory


def warm_up(lab_dir: Path) -> None:
    """Every VM speaks once (a ping to a peer of its network), as in a cloud that has run a
    while: the NORMAL switches have learned the VMs' MACs, so a known destination is not
    flooded. Without it a trace taken right after 'lab up' may rightly show a flood."""
    for name, vm in VM.items():
        peer = next(p for p in VM if p != name and VM[p]["network"] == vm["network"])
        proc = tn(lab_dir, "lab", "ping", name, peer, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def trace(lab_dir: Path, src: str, dst: str, *extra: str) -> dict[str, Any]:
    proc = tn(lab_dir, "trace", "--dir", str(lab_dir), src, dst, "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def path_of(journey: dict[str, Any]) -> list[tuple[str, str, list[int]]]:
    """The (host, bridge, tables) of each visit the frame really made."""
    return [(v["host"], v["bridge"], [s["table"] for s in v["steps"]])
            for v in journey["visits"] if not v["hypothetical"]]


def tshark_fields(pcap: str, *fields: str, display: str = "") -> list[list[str]]:
    """tshark's reading of ``fields`` in each packet of ``pcap`` (matching ``display``)."""
    tshark = require_tool("tshark")
    args = [tshark, "-r", pcap, "-T", "fields", "-E", "separator=|"]
    if display:
        args += ["-Y", display]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]
