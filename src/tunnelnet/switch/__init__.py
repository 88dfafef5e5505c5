"""The switch layer: OpenFlow-style tables in ovs-ofctl syntax, NORMAL, learn() and trace.

No I/O here (see docs/architecture.md): the datapath feeds ``Bridge.process`` flow keys.

Modules, each about one thing:
  bridge        Bridge: ports, tables, flow-mods, process(), trace(), expire()
  flow_parser   one line of add/mod/del/dump flow text -> FlowSpec
  match_parser  match fields, masks, shorthands and prerequisites -> Match
  action_parser actions text -> Action objects (built once, run per packet)
  match         Match and Open vSwitch's canonical match print format
  actions       the actions: run() on a packet, format() as ovs-ofctl prints them
  learn         the learn() action
  nxm           NXM/OXM field names and bit ranges (FIELD[0..11])
  classifier    tuple space search over a table's flows
  flow          FlowEntry: a flow with counters and timeouts
  flow_format   dump-flows lines and trace "Flow:" text
  xlate         the per-packet walk through the tables (hot path), NORMAL's forwarding
  normal        NORMAL's per-VLAN MAC table with aging and a cap
  trace         Trace/TraceStep (text like ofproto/trace, JSON); trace_nodes: its layout
  explain       plain-word notes for --explain
  pipeline      the one declared Neutron pipeline: tables, next tables, misses, priority bands
  crossing      how a frame crosses a patch port or a tunnel into the next bridge
"""

from tunnelnet.switch.bridge import Bridge, FlowTable, PortConfig
from tunnelnet.switch.errors import FlowSyntaxError, SwitchError
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.pipeline import BR_INT, BR_TUN, PIPELINES, Pipeline, TableDecl
from tunnelnet.switch.trace import Trace, TraceStep
from tunnelnet.switch.xlate import Output

__all__ = [
    "BR_INT",
    "BR_TUN",
    "PIPELINES",
    "Bridge",
    "FlowEntry",
    "FlowSyntaxError",
    "FlowTable",
    "Output",
    "Pipeline",
    "PortConfig",
    "SwitchError",
    "TableDecl",
    "Trace",
    "TraceStep",
]
