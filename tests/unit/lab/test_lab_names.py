"""Names the lab gives what it makes: the VM's tap is named as Nova names it."""

from __future__ import annotations

from tunnelnet.lab import names


def test_a_vm_tap_is_named_as_nova_names_it_after_the_port() -> None:
    # nova/network/model.py: NIC_NAME_LEN = 14; devname = "tap" + vif id[:NIC_NAME_LEN - 3]
    port_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert names.vm_tap(port_id) == "tap0f1e2d3c-4b"
    assert len(names.vm_tap(port_id)) <= 15  # Linux IFNAMSIZ - 1
