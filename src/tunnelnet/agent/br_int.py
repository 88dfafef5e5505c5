"""Flows of the integration bridge br-int.

br-int switches with NORMAL inside each local VLAN; its flows only keep unbound ports dead and
mark the bridge so a restart of the switch can be noticed.
"""

from __future__ import annotations

from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.switch.pipeline import IntPriority, IntTable


def default_flows() -> list[FlowMod]:
    return [
        # a frame already on the dead VLAN (from a trunk) is never switched
        FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.DEAD_VLAN, f"dl_vlan={DEAD_VLAN}",
                "drop"),
        FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.DEFAULT, "",
                f"resubmit(,{IntTable.TRANSIENT})"),
        FlowMod(IntTable.CANARY, IntPriority.DEFAULT, "", "drop"),
        FlowMod(IntTable.TRANSIENT, IntPriority.NORMAL, "", "NORMAL"),
    ]


def _port_match(ofport: int) -> str:
    return f"in_port={ofport}"


def dead_port(ofport: int) -> FlowMod:
    """A vNIC whose controller port is unknown sends nothing (it also sits on VLAN 4095)."""
    return FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.PORT_DROP, _port_match(ofport), "drop")
