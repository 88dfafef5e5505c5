"""Real frames through Open vSwitch's datapath versus our `Bridge.process()`, on Neutron's br-tun.

`ofproto/trace` simulates; this test does not. Frames built with scapy are injected into OVS's
userspace datapath (`netdev-dummy/receive`): VM frames on patch-int, and real VXLAN / GRE
packets from the peers on the underlay uplink, which OVS decapsulates itself. What OVS sends is
captured on the dummy ports (`options:tx_pcap`) and read back with scapy: VM frames leaving on
patch-int, and tunnel packets leaving on the uplink with their outer destination (which peer),
VNI or GRE key, and inner frame. learn() runs for real, so the sequence covers learning, a MAC
moving between peers, and unknown keys. At the end the flow counters (n_packets, n_bytes) and
the learned flows must be what our bridge has after processing the same frames.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator

import pytest

from support.br_tun_datapath import (
    BRIDGE,
    BY_PORT,
    HOST,
    L2POP_HOST,
    L2POP_SEQUENCE,
    PATCH_INT,
    PEERS,
    SEQUENCE,
    Copy,
    Frame,
    Rig,
    inject,
    ovs_rig,
    stable,
)
from support.neutron_br_tun import BrTunHost, br_tun_flows
from support.ovs_diff import vid_of_key
from tunnelnet.switch import Bridge, Output
from tunnelnet.switch.cache import FlowCache

pytestmark = [pytest.mark.interop, pytest.mark.root]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with ovs_rig() as made:
        yield made


def our_copies(process: Callable[[dict[str, int], int], list[Output]], frame: Frame) -> list[Copy]:
    key, length = frame.key_for_ours()
    copies: list[Copy] = []
    for out in process(key, length):
        mac: tuple[object, ...] = (_mac(out.key["dl_src"]), _mac(out.key["dl_dst"]))
        if "arp_op" in out.key:
            mac += (
                out.key["arp_op"],
                str(ipaddress.IPv4Address(out.key["arp_spa"])),
                str(ipaddress.IPv4Address(out.key["arp_tpa"])),
                _mac(out.key["arp_sha"]),
                _mac(out.key["arp_tha"]),
            )
        if out.port == PATCH_INT:
            copies.append(("patch-int", vid_of_key(out.key), *mac))
        elif out.port in BY_PORT:
            peer = BY_PORT[out.port]
            copies.append((peer.remote_ip, peer.kind, out.key["tun_id"], vid_of_key(out.key), *mac))
        else:
            copies.append(("unexpected-port", out.port))
    return sorted(copies, key=repr)


def _mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def _our_bridge(host: BrTunHost = HOST) -> Bridge:
    bridge = Bridge(BRIDGE, fail_mode="secure")
    bridge.add_port("patch-int", PATCH_INT)
    for peer in PEERS:
        bridge.add_port(peer.port_name, peer.ofport)
    bridge.add_flows(br_tun_flows(host))
    return bridge


def test_frames_through_the_ovs_datapath_leave_as_ours_do_and_count_the_same(rig: Rig) -> None:
    """Twice through the sequence, each frame twice: repeats meet OVS's megaflows and our cache.

    Ours runs two ways: the table walk (`Bridge.process`) and the flow cache the vswitchd uses
    (`FlowCache.process`), whose hits replay counters and learning instead of walking. After
    each frame OVS is made to revalidate its cached datapath flows (`revalidator/wait`), as it
    would shortly do by itself, so that a learned move is in force for the next frame.
    """
    rig.ovs.del_flows(BRIDGE)
    rig.ovs.add_flows(BRIDGE, br_tun_flows(HOST))
    walked = _our_bridge()
    cached_bridge = _our_bridge()
    cache = FlowCache(cached_bridge)
    problems: list[str] = []
    # Each frame twice in a row, so that a repeat can be answered from the caches.
    for rnd in (1, 2):
        for frame in (f for f in SEQUENCE for _ in range(2)):
            theirs = inject(rig, frame)
            rig.ovs.appctl("revalidator/wait")
            for name, copies in (
                ("walk", our_copies(walked.process, frame)),
                ("cache", our_copies(cache.process, frame)),
            ):
                if copies != theirs:
                    problems.append(f"pass {rnd} {frame.label}: OVS sent {theirs}, {name} {copies}")
    # Stats reach the OpenFlow rules when the revalidators run; purge makes that happen now.
    rig.ovs.appctl("revalidator/purge")
    theirs_dump = stable(rig.ovs.dump_flows(BRIDGE, no_stats=False))
    for name, bridge in (("walk", walked), ("cache", cached_bridge)):
        ours_dump = stable(bridge.dump_flows(stats=True))
        if ours_dump != theirs_dump:
            problems.append(
                f"{name}: counters/learned flows: only in OVS "
                f"{sorted(theirs_dump - ours_dump)}\nonly in ours {sorted(ours_dump - theirs_dump)}"
            )
    assert not problems, "\n".join(problems)
    assert cache.stats.hits > 0, f"no frame was answered from the flow cache: {cache.stats}"


def test_arp_responder_and_l2pop_through_the_ovs_datapath_answer_as_ours(rig: Rig) -> None:
    """ARP requests answered by br-tun itself (reply frames compared field by field, for two
    tenants with the same IP), l2pop's known unicast and its limited flood list."""
    rig.ovs.del_flows(BRIDGE)
    rig.ovs.add_flows(BRIDGE, br_tun_flows(L2POP_HOST))
    bridge = _our_bridge(L2POP_HOST)
    problems: list[str] = []
    for frame in L2POP_SEQUENCE:
        theirs = inject(rig, frame)
        ours = our_copies(bridge.process, frame)
        if ours != theirs:
            problems.append(f"{frame.label}: OVS sent {theirs}, ours {ours}")
    assert not problems, "\n".join(problems)
