"""The lab reads a lease from what busybox udhcpc hands its script (udhcpc(8): ``ip``,
``subnet`` as a dotted mask, ``router``, ``dns``, ``mtu``, ``staticroutes`` as pairs,
``serverid``), and the script itself is run as udhcpc runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tunnelnet.lab.dhcp_client import SCRIPT, DhcpClientError, parse_lease

ENV = """interface=eth0
ip=10.0.0.11
subnet=255.255.255.0
router=10.0.0.1
dns=192.0.2.53 192.0.2.54
mtu=1450
staticroutes=172.16.0.0/16 10.0.0.254 0.0.0.0/0 10.0.0.1
serverid=10.0.0.2
hostname=host-10-0-0-11
lease=86400
"""


def test_a_lease_is_read_with_mask_as_prefix_and_routes_as_pairs() -> None:
    lease = parse_lease(ENV)
    assert (lease.ip, lease.prefixlen, lease.router, lease.mtu) == ("10.0.0.11", 24,
                                                                    "10.0.0.1", 1450)
    assert lease.dns == ("192.0.2.53", "192.0.2.54")
    assert lease.routes == (("172.16.0.0/16", "10.0.0.254"), ("0.0.0.0/0", "10.0.0.1"))
    assert lease.server == "10.0.0.2"


def test_a_lease_without_options_has_none_of_them() -> None:
    lease = parse_lease("ip=10.0.0.11\nsubnet=255.255.255.128\n")
    assert (lease.prefixlen, lease.router, lease.mtu, lease.routes) == (25, None, None, ())


def test_a_lease_without_an_address_is_an_error() -> None:
    with pytest.raises(DhcpClientError, match="no address"):
        parse_lease("router=10.0.0.1\n")


@pytest.mark.parametrize(("event", "written"), [("bound", True), ("renew", True),
                                                 ("deconfig", False), ("leasefail", False)])
def test_the_hook_writes_the_lease_down_only_when_bound(tmp_path: Path, event: str,
                                                        written: bool) -> None:
    script, lease = tmp_path / "hook.sh", tmp_path / "vm.lease"
    script.write_text(SCRIPT)
    script.chmod(0o700)
    subprocess.run([str(script), event], check=True, timeout=10,
                   env={"PATH": os.environ["PATH"], "TUNNELNET_LEASE_FILE": str(lease),
                        "ip": "10.0.0.11", "subnet": "255.255.255.0"})
    assert lease.exists() == written
    if written:
        assert parse_lease(lease.read_text()).ip == "10.0.0.11"
