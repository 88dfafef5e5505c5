"""One answer in the real lab (root): ``tunnelnet trace`` (the walker reading the running
vswitchds over their control sockets) and ``lab verify`` (real pings between namespaces)
agree for every ordered pair of examples/vlan-vs-tunnel.toml, whose VLAN network crosses the
physical switch between the hypervisors' br-eth1 bridges and whose VXLAN network crosses a
tunnel. The traces are taken first, on switches that have learned nothing yet, so the
walker's own ARP exchange is what teaches them; the expected answers come from the topology
file (same network reaches, nothing else does).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab_cli import run_lab, running_lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "vlan-vs-tunnel.toml"
TOPO = tomllib.loads(EXAMPLE.read_text())
NETWORK = {v["name"]: v["network"] for v in TOPO["vm"]}
SEGMENT = {n["name"]: n["segment"] for n in TOPO["network"]}
# a namespace prefix of our own: this lab can be up beside another one
PREFIX = f"toa{os.getpid() % 10000}"


def _tn(lab_dir: Path, command: str, *args: str, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, command=command, timeout=timeout)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the real lab needs root")
    directory = tmp_path_factory.mktemp("oneanswer")
    with running_lab(PREFIX, EXAMPLE, directory, timeout=300):
        yield directory


def test_trace_and_verify_agree_for_every_pair_and_the_exit_status_says_it(
        lab_dir: Path) -> None:
    traces: dict[tuple[str, str], dict[str, Any]] = {}
    for src in NETWORK:
        for dst in NETWORK:
            if src == dst:
                continue
            proc = _tn(lab_dir, "trace", "--dir", str(lab_dir), src, dst, "--json")
            expected = NETWORK[src] == NETWORK[dst]
            assert proc.returncode == (0 if expected else 1), (src, dst, proc.stderr)
            traces[(src, dst)] = json.loads(proc.stdout)
            assert traces[(src, dst)]["outcome"]["delivered"] is expected, (src, dst)
    verify = _tn(lab_dir, "lab", "--dir", str(lab_dir), "verify", "--json", timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    pairs = json.loads(verify.stdout)["pairs"]
    assert len(pairs) == len(traces)
    for pair in pairs:
        journey = traces[(pair["src"], pair["dst"])]
        assert pair["reached"] is journey["outcome"]["delivered"], pair
        assert pair["reached"] is (NETWORK[pair["src"]] == NETWORK[pair["dst"]]), pair
    # the VLAN network's echo leaves hv1 by br-eth1's uplink with the provider VLAN id and
    # enters the other hypervisor's br-eth1 by its uplink (IEEE 802.1Q on the physical switch)
    old = traces[("old1", "old2")]
    out = [(v["host"], v["bridge"], e["port"], e["kind"], e["vlan"])
           for v in old["visits"] for e in v["exits"]]
    assert ("hv1", "br-eth1", "eth1", "physical", SEGMENT["old-vlan"]) in out
    assert old["encapsulation"] == []
    new = traces[("new1", "new2")]
    assert [e["key"] for e in new["encapsulation"]] == [SEGMENT["new-vxlan"]]


def test_an_unknown_vm_is_an_error_exit_2(lab_dir: Path) -> None:
    for args in (["trace", "--dir", str(lab_dir), "old1", "mallory"],
                 ["lab", "--dir", str(lab_dir), "ping", "old1", "mallory"]):
        proc = _tn(lab_dir, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "mallory" in proc.stderr and "Traceback" not in proc.stderr
