"""Flows of the tunnel bridge br-tun, built as Neutron's Open vSwitch agent builds them.

Pure functions: each returns FlowMods for one flow family, and an add and its removal share
one match helper. Table ids and priority bands come from :mod:`tunnelnet.switch.pipeline`; the
tunnel-key tables from the tunnel-kind registry, so every registered kind gets its flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.mtu_doctor import userdata_text
from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.fields import mac_to_int
from tunnelnet.switch.pipeline import TunPriority, TunTable, tunnel_kinds_by_table

_UNICAST = "dl_dst=00:00:00:00:00:00/01:00:00:00:00:00"
_MULTICAST = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"

# What Open vSwitch's check_pkt_larger weighs of a frame from patch-int, besides the IP
# packet: its Ethernet header and the local VLAN tag br-int gave it (measured on Open vSwitch
# 3.1's userspace datapath: with check_pkt_larger(1468), a 1450-byte IP packet on local VLAN
# 1 passes and a 1451-byte one is caught, and its packet-in holds 1469 tagged bytes)
MTU_CHECK_L2 = 14 + 4
TOO_BIG_MARK = "NXM_NX_REG0[0]"

# Learned "MAC behind tunnel" entries expire after 300 s without being re-learned, as in
# Neutron: a VM that moves is found again by flooding within that time at worst.
LEARNED_HARD_TIMEOUT = 300


def _goto(table: int) -> str:
    return f"resubmit(,{table})"


def learned_entry(local_vid: int, mac: str) -> str:
    """The match (with table and priority, for a strict delete) of the table-20 entry that
    table 10's learn() writes for MAC on local VLAN LOCAL_VID: the same fields, in the same
    form, as the learned flow's own (``NXM_OF_VLAN_TCI[0..11]``, ``NXM_OF_ETH_DST[]``)."""
    return (f"table={TunTable.UCAST_TO_TUN},priority={TunPriority.LEARNED},"
            f"vlan_tci={local_vid:#06x}/0x0fff,dl_dst={mac}")


def learned_towards(tunnel_ofport: int) -> str:
    """The match (for a non-strict delete) of every table-20 entry that sends to the tunnel
    port TUNNEL_OFPORT: when the agent removes that tunnel, what table 10 learned through it
    would otherwise send into a port that is gone (a black hole until the entry's hard
    timeout), or into whichever tunnel is given that number next. The switch keeps flows
    when a port goes, as Open vSwitch does, so the agent removes them itself."""
    return f"table={TunTable.UCAST_TO_TUN},out_port={tunnel_ofport}"


def default_flows(patch_int_ofport: int, *, cookie: int, arp_responder: bool) -> list[FlowMod]:
    """The skeleton every br-tun has before any network: classify, split, learn, drop misses."""
    learn = (
        f"learn(table={TunTable.UCAST_TO_TUN},priority={TunPriority.LEARNED},"
        f"hard_timeout={LEARNED_HARD_TIMEOUT},"
        f"cookie={cookie:#x},"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
        "output:OXM_OF_IN_PORT[])"
    )
    flows = [
        FlowMod(TunTable.LOCAL_SWITCHING, TunPriority.ENTRY, f"in_port={patch_int_ofport}",
                _goto(TunTable.PATCH_LV_TO_TUN)),
        FlowMod(TunTable.LOCAL_SWITCHING, TunPriority.DEFAULT, "", "drop"),
        FlowMod(TunTable.PATCH_LV_TO_TUN, TunPriority.DEFAULT, _UNICAST,
                _goto(TunTable.UCAST_TO_TUN)),
        FlowMod(TunTable.PATCH_LV_TO_TUN, TunPriority.DEFAULT, _MULTICAST,
                _goto(TunTable.FLOOD_TO_TUN)),
        # a key no local network uses is dropped, for every kind the registry knows
        *(FlowMod(k.neutron_table, TunPriority.DEFAULT, "", "drop")
          for k in tunnel_kinds_by_table()),
        FlowMod(TunTable.LEARN_FROM_TUN, TunPriority.ENTRY, "",
                f"{learn},output:{patch_int_ofport}"),
        FlowMod(TunTable.UCAST_TO_TUN, TunPriority.DEFAULT, "", _goto(TunTable.FLOOD_TO_TUN)),
        FlowMod(TunTable.FLOOD_TO_TUN, TunPriority.DEFAULT, "", "drop"),
    ]
    if arp_responder:
        flows += [
            FlowMod(TunTable.PATCH_LV_TO_TUN, TunPriority.ENTRY, "arp,dl_dst=ff:ff:ff:ff:ff:ff",
                    _goto(TunTable.ARP_RESPONDER)),
            FlowMod(TunTable.ARP_RESPONDER, TunPriority.DEFAULT, "",
                    _goto(TunTable.FLOOD_TO_TUN)),
        ]
    return flows


def _tunnel_port_match(ofport: int) -> str:
    return f"in_port={ofport}"


def tunnel_port(network_type: str, ofport: int) -> FlowMod:
    """Frames arriving on a tunnel port go to the key -> local VLAN table of its type."""
    return FlowMod(TunTable.LOCAL_SWITCHING, TunPriority.ENTRY, _tunnel_port_match(ofport),
                   _goto(tunnel_kinds.kind(network_type).neutron_table))


def _local_vlan_match(segment: int) -> str:
    return f"tun_id={segment:#x}"


def local_vlan(network_type: str, local_vid: int, segment: int) -> FlowMod:
    """VLAN <-> key translation, inbound half: this network's key gets its local VLAN."""
    return FlowMod(tunnel_kinds.kind(network_type).neutron_table, TunPriority.ENTRY,
                   _local_vlan_match(segment),
                   f"mod_vlan_vid:{local_vid},{_goto(TunTable.LEARN_FROM_TUN)}")


def _flood_match(local_vid: int) -> str:
    return f"dl_vlan={local_vid}"


def flood_to_tunnels(local_vid: int, segment: int, ofports: Sequence[int]) -> FlowMod | None:
    """The flood list: broadcast and unknown unicast of a network, to each of its tunnels.

    None while the network has no tunnel: as in Neutron the entry is absent then, and the
    table's miss flow drops the network's frames rather than leaking them anywhere.
    """
    if not ofports:
        return None
    outputs = "".join(f",output:{p}" for p in sorted(ofports))
    return FlowMod(TunTable.FLOOD_TO_TUN, TunPriority.ENTRY, _flood_match(local_vid),
                   f"strip_vlan,set_tunnel:{segment:#x}{outputs}")


def _unicast_match(local_vid: int, mac: str) -> str:
    return f"dl_vlan={local_vid},dl_dst={mac.lower()}"


def unicast_to_tunnel(local_vid: int, segment: int, ofport: int, mac: str) -> FlowMod:
    """l2population: a remote VM's MAC is known in advance, so no flooding to find it."""
    return FlowMod(TunTable.UCAST_TO_TUN, TunPriority.L2POP, _unicast_match(local_vid, mac),
                   f"strip_vlan,load:{segment:#x}->NXM_NX_TUN_ID[],output:{ofport}")


def _arp_match(local_vid: int, ip: str) -> str:
    return f"arp,dl_vlan={local_vid},arp_tpa={ip}"


def arp_responder(local_vid: int, ip: str, mac: str) -> FlowMod:
    """Turns an ARP request for a known address into the reply, sent back where it came from."""
    mac_int = mac_to_int(mac)
    ip_int = int(IPv4Address(ip))
    actions = (
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
        f"mod_dl_src:{mac.lower()},"
        "load:0x2->NXM_OF_ARP_OP[],"
        "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
        f"load:{mac_int:#x}->NXM_NX_ARP_SHA[],"
        f"load:{ip_int:#x}->NXM_OF_ARP_SPA[],"
        "in_port"
    )
    return FlowMod(TunTable.ARP_RESPONDER, TunPriority.ENTRY, _arp_match(local_vid, ip), actions)


def max_frame(network_mtu: int) -> int:
    """The longest frame from patch-int (local VLAN tag included) a network's tunnels take."""
    return network_mtu + MTU_CHECK_L2


def _mtu_check_match(patch_int_ofport: int, local_vid: int) -> str:
    return f"in_port={patch_int_ofport},dl_vlan={local_vid}"


def mtu_check(patch_int_ofport: int, local_vid: int, network_mtu: int) -> FlowMod:
    """Open vSwitch only: a local network's frame from br-int is weighed against the
    network's MTU (reg0[0] set when it is larger) on its way to table 2."""
    return FlowMod(TunTable.LOCAL_SWITCHING, TunPriority.MTU_CHECK,
                   _mtu_check_match(patch_int_ofport, local_vid),
                   f"check_pkt_larger({max_frame(network_mtu)})->{TOO_BIG_MARK},"
                   f"{_goto(TunTable.PATCH_LV_TO_TUN)}")


def _too_big_match(local_vid: int) -> str:
    return f"reg0=0x1/0x1,dl_vlan={local_vid}"


def too_big(local_vid: int, network_mtu: int) -> FlowMod:
    """Open vSwitch only: a frame ``mtu_check`` found too big goes to the agent's MTU doctor,
    whose userdata names the reason and the longest frame the network takes."""
    return FlowMod(TunTable.PATCH_LV_TO_TUN, TunPriority.TOO_BIG, _too_big_match(local_vid),
                   f"controller(userdata={userdata_text(max_frame(network_mtu))})")
