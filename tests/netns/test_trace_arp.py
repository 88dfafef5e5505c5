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

from support.trace_lab import DEMO, VM, path_of, trace, trace_lab, tshark_fields

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with trace_lab(DEMO, tmp_path_factory.mktemp("arplab"), "--arp-responder") as directory:
        yield directory


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
