"""Local VLAN ids on this hypervisor: one per network that has ports here.

A network's local VLAN is only meaningful on one br-int; the tunnel key is what crosses hosts.
Ids are given lowest-first and given back when a network's last local port goes, so a host
can serve up to 4094 networks at a time whatever the size of the key space.
"""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError

MIN_VID = 1
MAX_VID = 4094


class LocalVlanExhausted(TunnelnetError):
    """All 4094 local VLAN ids of this hypervisor are in use."""


class LocalVlanManager:
    def __init__(self) -> None:
        self._by_network: dict[str, int] = {}

    def get(self, network_id: str) -> int | None:
        return self._by_network.get(network_id)

    def allocate(self, network_id: str) -> int:
        """The network's id, giving it the lowest free one if it has none."""
        current = self._by_network.get(network_id)
        if current is not None:
            return current
        used = set(self._by_network.values())
        for vid in range(MIN_VID, MAX_VID + 1):
            if vid not in used:
                self._by_network[network_id] = vid
                return vid
        raise LocalVlanExhausted(
            f"no local VLAN left for network {network_id}: all {MAX_VID} ids are in use"
        )

    def release(self, network_id: str) -> int | None:
        return self._by_network.pop(network_id, None)

    def restore(self, network_id: str, vid: int) -> None:
        """Re-adopt an id found on the switch after an agent restart, so ports keep their tag."""
        if not MIN_VID <= vid <= MAX_VID:
            raise ValueError(f"local VLAN {vid} out of range {MIN_VID}..{MAX_VID}")
        owner = next((n for n, v in self._by_network.items() if v == vid), None)
        if owner is not None and owner != network_id:
            raise ValueError(f"local VLAN {vid} already belongs to network {owner}")
        self._by_network[network_id] = vid

    def items(self) -> dict[str, int]:
        return dict(self._by_network)
