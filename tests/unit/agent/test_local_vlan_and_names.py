"""Local VLAN allocation and tunnel port naming on one hypervisor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelnet.agent.local_vlan import MAX_VID, LocalVlanExhausted, LocalVlanManager
from tunnelnet.agent.tunnels import parse_tunnel_port_name, tunnel_port_name


def test_first_network_gets_vlan_1_and_keeps_it() -> None:
    lvm = LocalVlanManager()
    assert lvm.allocate("net-a") == 1
    assert lvm.allocate("net-b") == 2
    assert lvm.allocate("net-a") == 1


def test_released_vlan_is_reused_lowest_first() -> None:
    lvm = LocalVlanManager()
    for name in ("a", "b", "c"):
        lvm.allocate(name)
    assert lvm.release("b") == 2
    assert lvm.allocate("d") == 2


def test_exhaustion_is_a_clear_error() -> None:
    lvm = LocalVlanManager()
    for i in range(MAX_VID):
        lvm.allocate(f"n{i}")
    with pytest.raises(LocalVlanExhausted, match="4094"):
        lvm.allocate("one-too-many")


def test_restore_refuses_a_vlan_owned_by_another_network() -> None:
    lvm = LocalVlanManager()
    lvm.allocate("a")
    with pytest.raises(ValueError, match="belongs to network a"):
        lvm.restore("b", 1)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=200))
def test_two_networks_never_share_a_local_vlan(ops: list[tuple[bool, int]]) -> None:
    lvm = LocalVlanManager()
    for add, net in ops:
        if add:
            lvm.allocate(f"n{net}")
        else:
            lvm.release(f"n{net}")
        vids = list(lvm.items().values())
        assert len(vids) == len(set(vids))
        assert all(1 <= v <= MAX_VID for v in vids)


def test_tunnel_port_name_holds_the_peer_address_in_hex() -> None:
    # 192.0.2.2 = 0xc0000202; Neutron names the port vxlan-c0000202
    assert tunnel_port_name("vxlan", "192.0.2.2") == "vxlan-c0000202"
    assert tunnel_port_name("gre", "10.0.0.1") == "gre-0a000001"
    # Neutron's geneve prefix is the longest: 7 + 8 = 15 characters, IFNAMSIZ - 1
    assert tunnel_port_name("geneve", "255.255.255.255") == "geneve-ffffffff"
    assert len(tunnel_port_name("vxlan", "255.255.255.255")) <= 15


def test_tunnel_port_name_parses_back_and_ignores_other_ports() -> None:
    assert parse_tunnel_port_name("gre-c0000203") == ("gre", "192.0.2.3")
    assert parse_tunnel_port_name("geneve-c0000204") == ("geneve", "192.0.2.4")
    assert parse_tunnel_port_name("geneve-c00002") is None
    assert parse_tunnel_port_name("patch-tun") is None
    assert parse_tunnel_port_name("vxlan-zzzzzzzz") is None
    with pytest.raises(ValueError):
        tunnel_port_name("vlan", "192.0.2.2")
