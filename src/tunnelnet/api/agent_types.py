"""The agent types a controller knows, by Neutron's names (``openstack network agent list``):
one agent of each type per host. Only the Open vSwitch agent reports a tunnel IP; readers
that want a host's switch keeper pick it by this name."""

from __future__ import annotations

OVS_AGENT = "Open vSwitch agent"
DHCP_AGENT = "DHCP agent"
