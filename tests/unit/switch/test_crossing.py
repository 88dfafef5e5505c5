"""Crossing a patch port and a tunnel, as Open vSwitch does it (one module, every walker)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tunnelnet.packet.errors import PacketError
from tunnelnet.switch import crossing


@dataclass
class Port:
    name: str
    type: str
    options: dict[str, str] = field(default_factory=dict)


def _ports(*ports: Port) -> dict[str, Port]:
    return {p.name: p for p in ports}


def test_a_patch_port_enters_the_peer_that_names_it_back() -> None:
    int_, tun = Port("patch-tun", "patch", {"peer": "patch-int"}), \
        Port("patch-int", "patch", {"peer": "patch-tun"})
    assert crossing.patch_peer(int_, _ports(int_, tun).get) is tun


@pytest.mark.parametrize("peer", [
    None,  # the named peer does not exist
    Port("patch-int", "patch", {"peer": "somebody-else"}),  # it does not name us back
    Port("patch-int", "internal", {"peer": "patch-tun"}),  # it is no patch port
])
def test_an_unconnected_patch_port_has_no_peer(peer: Port | None) -> None:
    port = Port("patch-tun", "patch", {"peer": "patch-int"})
    ports = _ports(port, *([peer] if peer else []))
    assert crossing.patch_peer(port, ports.get) is None


def test_crossing_a_patch_port_keeps_the_headers_and_zeroes_the_pipeline_state() -> None:
    key = {"in_port": 5, "dl_vlan": 0, "dl_src": 1, "dl_dst": 2, "nw_src": 3, "tun_id": 77,
           "tun_src": 9, "tun_dst": 8, "metadata": 6, "reg0": 4, "reg7": 1}
    crossed = crossing.across_patch(key, 2)
    assert crossed["in_port"] == 2
    assert {k: crossed[k] for k in ("dl_src", "dl_dst", "nw_src")} == \
        {"dl_src": 1, "dl_dst": 2, "nw_src": 3}
    # ofproto-dpif-xlate.c patch_port_output: tunnel, metadata and registers do not cross
    assert not {"tun_id", "tun_src", "tun_dst", "metadata", "reg0", "reg7"} & crossed.keys()
    assert set(crossing.RESET_BY_PATCH) == {"tun_id", "tun_src", "tun_dst", "metadata",
                                            *(f"reg{i}" for i in range(8))}


def test_a_vxlan_key_flow_port_carries_the_outputs_tun_id_cut_to_24_bits() -> None:
    port = Port("vxlan-0a000002", "vxlan", {"remote_ip": "10.0.0.2", "key": "flow"})
    hop = crossing.tunnel_hop(port, 0x1_000_0065, "10.0.0.1")
    # RFC 7348: the VNI is 24 bits
    assert (hop.kind.name, hop.key, hop.local_ip, hop.remote_ip) == \
        ("vxlan", 0x65, "10.0.0.1", "10.0.0.2")


def test_a_gre_port_with_a_fixed_key_and_local_ip_ignores_the_flow() -> None:
    port = Port("gre-1", "gre", {"remote_ip": "10.0.0.3", "local_ip": "10.0.0.9",
                                 "key": "0x100000001"})
    hop = crossing.tunnel_hop(port, 5, "10.0.0.1")
    # RFC 2890: the GRE key is 32 bits
    assert (hop.key, hop.local_ip) == (0x00000001, "10.0.0.9")


def test_the_peer_takes_it_on_its_port_of_that_kind_back_to_the_sender() -> None:
    hop = crossing.tunnel_hop(Port("vxlan-a", "vxlan", {"remote_ip": "10.0.0.2"}), 101,
                              "10.0.0.1")
    theirs = [Port("gre-back", "gre", {"remote_ip": "10.0.0.1"}),
              Port("vxlan-other", "vxlan", {"remote_ip": "10.0.0.3"}),
              Port("vxlan-back", "vxlan", {"remote_ip": "10.0.0.1"})]
    assert hop.entry(theirs) is theirs[2]
    assert hop.demux == ("vxlan", "10.0.0.1")
    assert hop.entry(theirs[:2]) is None  # an unknown tunnel peer: dropped before any table
    arrived = hop.arriving({"in_port": 1, "dl_dst": 7, "reg3": 4, "tun_id": 9}, 3)
    assert arrived == {"in_port": 3, "dl_dst": 7, "tun_id": 101,
                       "tun_src": 0x0A000001, "tun_dst": 0x0A000002}
    assert crossing.host_at("10.0.0.2", {"hv1": "10.0.0.1", "hv2": "10.0.0.2"}) == "hv2"
    assert crossing.host_at("10.0.0.5", {"hv1": "10.0.0.1"}) is None


def test_a_port_of_no_known_kind_is_no_tunnel() -> None:
    assert crossing.is_tunnel(Port("vxlan-x", "vxlan")) and crossing.is_tunnel(Port("g", "gre"))
    assert not crossing.is_tunnel(Port("p", "patch"))
    with pytest.raises(PacketError):
        crossing.tunnel_hop(Port("p", "patch", {"remote_ip": "10.0.0.2"}), 1, "10.0.0.1")
