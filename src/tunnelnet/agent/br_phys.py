"""Flows for VLAN and flat networks: br-int <-> a physical bridge, as Neutron builds them.

A provider network leaves the hypervisor untunnelled on a physical network. br-int holds the
local VLAN; the physical bridge (``br-eth1`` for ``physnet1:br-eth1``) holds the uplink. The
patch pair between them (``int-br-eth1`` on br-int, ``phy-br-eth1`` on the physical bridge)
translates: local VLAN -> provider VLAN (or no tag, for flat) on the way out, and back on the
way in. Everything else arriving on either patch port is dropped, so no other network's
frames cross. The physical switch must carry those VLANs: that is the manual configuration
tunnels avoid.
"""

from __future__ import annotations

from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.switch.pipeline import IntPriority, IntTable, PhysPriority, PhysTable

INT_PREFIX = "int-"  # on br-int, towards a physical bridge
PHY_PREFIX = "phy-"  # on the physical bridge, towards br-int
_UNTAGGED = "vlan_tci=0x0000/0x1fff"


def int_patch_name(bridge: str) -> str:
    return f"{INT_PREFIX}{bridge}"[:15]


def phy_patch_name(bridge: str) -> str:
    return f"{PHY_PREFIX}{bridge}"[:15]


def phys_default_flows(phy_patch_ofport: int) -> list[FlowMod]:
    """The physical bridge: NORMAL for what the uplink brings, drop unknown local VLANs."""
    return [
        FlowMod(PhysTable.LOCAL_SWITCHING, PhysPriority.PORT_DROP, f"in_port={phy_patch_ofport}",
                "drop"),
        FlowMod(PhysTable.LOCAL_SWITCHING, PhysPriority.DEFAULT, "", "NORMAL"),
    ]


def int_default_flows(int_patch_ofport: int) -> list[FlowMod]:
    """br-int: nothing from a physical network enters unless its VLAN is translated."""
    return [FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.PORT_DROP, f"in_port={int_patch_ofport}",
                    "drop")]


def outbound(phy_patch_ofport: int, local_vid: int, network_type: str,
             segment: int | None) -> FlowMod:
    """Local VLAN -> provider VLAN (vlan) or untagged (flat), then the physical switch."""
    match = f"in_port={phy_patch_ofport},dl_vlan={local_vid}"
    if network_type == "flat":
        return FlowMod(PhysTable.LOCAL_SWITCHING, PhysPriority.TO_PHYSNET, match,
                       "strip_vlan,NORMAL")
    return FlowMod(PhysTable.LOCAL_SWITCHING, PhysPriority.TO_PHYSNET, match,
                   f"mod_vlan_vid:{segment},NORMAL")


def inbound(int_patch_ofport: int, local_vid: int, network_type: str,
            segment: int | None) -> FlowMod:
    """Provider VLAN (or untagged, for flat) -> local VLAN, then br-int's NORMAL."""
    vlan = _UNTAGGED if network_type == "flat" else f"dl_vlan={segment}"
    return FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.FROM_PHYSNET,
                   f"in_port={int_patch_ofport},{vlan}",
                   f"mod_vlan_vid:{local_vid},resubmit(,{IntTable.TRANSIENT})")
