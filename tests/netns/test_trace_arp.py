"""`tunnelnet trace --proto arp` over a demo lab whose agents run the ARP responder.

Expectations come from Neutron's design (with l2population and the ARP responder, br-tun's
table 21 answers an ARP request for a known VM address on the spot, on the asking host, and
the request never crosses the underlay) and tshark reads what VM1 really got back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_trace import DEMO, VM, _tn, path_of, trace, tshark_fields, warm_up

from support.tools import require_tool

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("tcpdump")
    directory = tmp_path_factory.mktemp("arplab")
    up = _tn("lab", "--dir", str(directory), "up", "--arp-responder", str(DEMO), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        warm_up(directory)
        yield directory
    finally:
        down = _tn("lab", "--dir", str(directory), "down", timeout=240)
        assert down.returncode == 0, down.stdout + down.stderr


def test_arp_request_across_hosts_is_answered_by_table_21_on_the_asking_host(
        lab_dir: Path, tmp_path: Path) -> None:
    a, b = VM["red1"], VM["red3"]
    assert a["hypervisor"] != b["hypervisor"]
    j = trace(lab_dir, "red1", "red3", "--proto", "arp", "--live", "--evidence", str(tmp_path))
    path = path_of(j)
    assert path[1][:2] == (a["hypervisor"], "br-tun")
    assert path[1][2][-1] == 21  # the ARP responder table answers
    assert all(host == a["hypervisor"] for host, _, _ in path)
    assert j["encapsulation"] == []  # the request never crosses the underlay
    answered = [e for e in j["outcome"]["ends"] if e["what"] == "answered"]
    assert answered and answered[0]["vm"] == "red1"
    assert j["live"]["ok"], j["live"]["failures"]
    state = json.loads((lab_dir / "state.json").read_text())
    # tshark: red1 got a reply saying red3's address is at red3's own MAC
    rows = tshark_fields(j["live"]["evidence"]["vm-red1"], "arp.src.proto_ipv4",
                         "arp.src.hw_mac", display="arp.opcode == 2")
    assert [b["ip"], state["vms"]["red3"]["mac"]] in rows
    # and red3 never saw the request
    assert tshark_fields(j["live"]["evidence"]["vm-red3"], "arp.dst.proto_ipv4",
                         display=f"arp.opcode == 1 && arp.src.proto_ipv4 == {a['ip']}") == []
