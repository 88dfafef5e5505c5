"""The switch layer: OpenFlow-style tables in ovs-ofctl syntax, NORMAL, learn() and trace.

No I/O here (see ARCHITECTURE.md): the datapath feeds ``Bridge.process`` flow keys.
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
