"""Declared pipelines: what each table of a bridge is for, in words a reader can follow.

One record per table (as Faucet's faucet_pipeline.py and Neutron's ovs_constants.py name
them), so neither the agent nor the trace has bare table numbers without a meaning. The
trace's --explain uses these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class TableDecl:
    table: int
    name: str
    purpose: str
    next_tables: tuple[int, ...] = ()
    miss: str = "drop"


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    tables: dict[int, TableDecl] = field(default_factory=dict)

    def describe(self, table: int) -> TableDecl | None:
        return self.tables.get(table)


def _pipeline(name: str, *decls: TableDecl) -> Pipeline:
    return Pipeline(name, {d.table: d for d in decls})


# Neutron's br-tun (neutron/plugins/ml2/drivers/openvswitch/agent/common/constants.py)
BR_TUN: Final = _pipeline(
    "br-tun",
    TableDecl(0, "LOCAL_SWITCHING",
              "classify by input port: patch from br-int or a tunnel", (2, 3, 4)),
    TableDecl(2, "PATCH_LV_TO_TUN",
              "from br-int: unicast goes to 20, broadcast/multicast to 22", (20, 22)),
    TableDecl(3, "GRE_TUN_TO_LV",
              "from a GRE tunnel: map the tunnel key to this host's local VLAN", (10,)),
    TableDecl(4, "VXLAN_TUN_TO_LV",
              "from a VXLAN tunnel: map the VNI to this host's local VLAN", (10,)),
    TableDecl(6, "GENEVE_TUN_TO_LV",
              "from a Geneve tunnel: map the VNI to this host's local VLAN", (10,)),
    TableDecl(9, "DVR_NOT_LEARN", "DVR: frames that must not be learned", ()),
    TableDecl(10, "LEARN_FROM_TUN",
              "learning switch: remember which tunnel a source MAC is behind", (20,)),
    TableDecl(20, "UCAST_TO_TUN",
              "known unicast: send to the tunnel the destination MAC was learned on", (22,),
              miss="resubmit to 22 (flood)"),
    TableDecl(21, "ARP_RESPONDER",
              "answer ARP requests locally from known IP/MAC pairs", (22,)),
    TableDecl(22, "FLOOD_TO_TUN",
              "flood to every tunnel of the network, with its tunnel key", ()),
)  # fmt: skip

# Neutron's br-int tables used by tunnelnet
BR_INT: Final = _pipeline(
    "br-int",
    TableDecl(0, "LOCAL_SWITCHING",
              "classify and switch frames locally (NORMAL learning switch)", (23, 24, 60)),
    TableDecl(23, "CANARY_TABLE",
              "canary: its presence tells the agent the switch kept its flows"),
    TableDecl(24, "ARP_SPOOF_TABLE",
              "anti-spoofing: ARP must come from the port's own addresses", (60,)),
    TableDecl(60, "TRANSIENT_TABLE", "after checks: hand to the NORMAL learning switch"),
)  # fmt: skip

PIPELINES: Final[dict[str, Pipeline]] = {p.name: p for p in (BR_TUN, BR_INT)}
