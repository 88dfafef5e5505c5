"""`trace --src-mac/--src-ip` over the simulated demo lab: a forged frame stops on the sender's
br-int, and the trace names the port-security table and flow that drop it.

The expectations are Neutron's ARP spoofing protection (ARP_SPOOF_TABLE 24 checks an ARP's
sender IP, MAC_SPOOF_TABLE 25 the source MAC) and the topology file's addresses.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_view import SimLabView
from tunnelnet.lab.topology import load
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.journey import trace

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"
VM = {v["name"]: v for v in tomllib.loads(DEMO.read_text())["vm"]}


@pytest.fixture(scope="module")
def view() -> SimLabView:
    lab = SimLab(load(DEMO))
    assert lab.up().converged
    return SimLabView(lab)


def _dropped_on_source(view: SimLabView, **forge: str) -> str:
    proto = forge.pop("proto", "icmp")
    j = trace(view, "red1", "red3", proto, **forge)  # type: ignore[arg-type]
    assert not j.outcome.delivered
    assert [(v.host, v.bridge) for v in j.visits] == [(VM["red1"]["hypervisor"], "br-int")]
    (end,) = [e for e in j.outcome.ends if e.what == "dropped"]
    return end.reason


def test_a_forged_source_ip_is_dropped_by_table_25s_ip_rule(view: SimLabView) -> None:
    reason = _dropped_on_source(view, src_ip=VM["red2"]["ip"])
    tap = view.vms()["red1"].tap
    ofport = next(p.ofport for p in view.switch(VM["red1"]["hypervisor"]).ports("br-int")
                  if p.name == tap)
    assert reason.startswith("table 25 (MAC_SPOOF_TABLE")
    assert f"flow priority=3,ip,in_port={ofport} actions=drop" in reason


def test_a_forged_source_mac_is_dropped_in_table_25(view: SimLabView) -> None:
    reason = _dropped_on_source(view, src_mac=view.vms()["red2"].mac)
    assert reason.startswith("table 25 (MAC_SPOOF_TABLE")


def test_an_arp_claiming_the_gateway_is_dropped_by_table_24(view: SimLabView) -> None:
    reason = _dropped_on_source(view, proto="arp", src_ip="10.0.0.1")
    assert reason.startswith("table 24 (ARP_SPOOF_TABLE")
    assert reason.endswith("drops it: flow priority=0,every packet actions=drop")


def test_the_honest_frame_still_passes_and_bad_forgeries_are_refused(view: SimLabView) -> None:
    assert trace(view, "red1", "red3").outcome.delivered
    with pytest.raises(TraceError, match="not a MAC"):
        trace(view, "red1", "red3", src_mac="nope")
    with pytest.raises(TraceError, match="not an IPv4"):
        trace(view, "red1", "red3", src_ip="10.0.0.300")
