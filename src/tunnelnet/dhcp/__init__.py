"""DHCP for tenant networks: a DHCP port per network, dnsmasq behind it (Neutron's DHCP
agent)."""
