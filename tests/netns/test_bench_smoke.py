"""`python -m bench.datapath` keeps working: with tiny durations on two datapaths it produces
every figure, the JSON and the chart, and leaves no namespace or daemon behind. It asserts
that figures exist, never how fast anything is (speed is the benchmark's job, not a test's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.tools import require_tool

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]


def _bench_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("tnb")}


def test_bench_with_tiny_durations_produces_figures_json_and_chart(tmp_path: Path) -> None:
    require_tool("iperf3")
    require_tool("ping")
    before = _bench_namespaces()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.datapath", "--seconds", "1", "--repeats", "1",
         "--pings", "20", "--only",
         "kernel-vxlan,tunnelnet-vxlan-fastpath,tunnelnet-vxlan", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "datapath.json").read_text())
    assert set(report["results"]) == {"kernel-vxlan", "tunnelnet-vxlan-fastpath",
                                      "tunnelnet-vxlan"}
    for name, res in report["results"].items():
        med = res["median"]
        for metric in ("tcp1_gbps", "tcp4_gbps", "udp64_pps", "rtt_avg_ms", "rtt_p99_ms"):
            assert med[metric] is not None and med[metric] > 0, (name, metric)
    # the kernel has no datapath process; tunnelnet's vswitchd CPU time is accounted
    assert report["results"]["kernel-vxlan"]["median"]["cpu_s_per_gbit"] is None
    assert report["results"]["tunnelnet-vxlan-fastpath"]["median"]["cpu_s_per_gbit"] is not None
    assert report["results"]["tunnelnet-vxlan"]["median"]["cpu_s_per_gbit"] > 0
    # the machine's busy CPU is counted for every datapath, the kernel's own included
    for name, res in report["results"].items():
        assert res["median"]["machine_cpu_s_per_gbit"] > 0, name
    assert report["ratios"]["kernel-vxlan"]["tcp1_gbps_x_kernel"] == pytest.approx(1.0)
    # the round's own ratio, from that round's two runs
    ours, theirs = (report["results"][n]["runs"][0] for n in ("tunnelnet-vxlan",
                                                             "kernel-vxlan"))
    by_round = report["round_ratios"]["tunnelnet-vxlan"]
    assert by_round["rtt_avg_ms_x_kernel"] == [pytest.approx(ours["rtt_avg_ms"]
                                                             / theirs["rtt_avg_ms"])]
    assert by_round["udp64_pps_x_kernel"] == [pytest.approx(ours["udp64_pps"]
                                                            / theirs["udp64_pps"])]
    assert report["round_ratios"]["kernel-vxlan"] == {}  # no other reference ran
    assert (tmp_path / "datapath.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tunnelnet-vxlan" in proc.stdout and "TCP1 xOVS" in proc.stdout
    assert _bench_namespaces() <= before, "the benchmark left namespaces behind"
