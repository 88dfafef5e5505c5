"""The agent's own constant of br-int; the tables themselves are declared once elsewhere.

Table ids, Neutron's names, purposes, next tables and priority bands live in
:mod:`tunnelnet.switch.pipeline`, which the agent's flow builders and the explanations of the
switch and the trace all read.
"""

from __future__ import annotations

from typing import Final

# The local VLAN that marks "not bound yet": a vNIC on it can neither send nor receive
# (Neutron bug 1734320: an unbound port must never see another tenant's traffic).
DEAD_VLAN: Final = 4095
