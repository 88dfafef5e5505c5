"""`tunnelnet store copy`: a controller's state moved from its SQLite file to etcd (and back)
serves the same cloud: the same answers, the same tokens, allocations that go on without
collision, and agents that resume only when they had seen everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.controller import ServerProcess
from support.etcd import EtcdServer, etcd_server, unique_prefix
from tunnelnet.client import Client, ClientError, ResyncRequired

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here

_KINDS = ("network", "subnet", "port", "project")


def _tn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def _everything(client: Client) -> dict[str, list[dict[str, Any]]]:
    return {kind: sorted(client.list(kind), key=lambda d: str(d["id"])) for kind in _KINDS}


def _cloud(admin: Client, url: str) -> tuple[str, str]:
    """Two projects' networks, subnets and ports, one shared network; a project token."""
    token = admin.create_token(project="copy-a")["id"]
    with Client(url, token) as tenant:
        net = tenant.create("network", name="a-net")
        tenant.create("subnet", network_id=net["id"], cidr="10.70.0.0/28")
        for name in ("vm1", "vm2", "vm3"):
            tenant.create("port", network_id=net["id"], name=name)
    shared = admin.create("network", name="public", shared=True,
                          **{"provider:network_type": "vlan",
                             "provider:physical_network": "physnet1",
                             "provider:segmentation_id": 1234})  # fmt: skip
    admin.create("subnet", network_id=shared["id"], cidr="10.71.0.0/24")
    admin.create("port", network_id=shared["id"], name="router-ish")
    return token, net["id"]


def test_a_sqlite_controller_moves_to_etcd_and_serves_the_same_cloud(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    db = tmp_path / "source.db"
    with ServerProcess(db) as source, source.client() as admin:
        token, net_id = _cloud(admin, source.url)
        before = _everything(admin)
        revision = admin.list_with_revision("network")[1]
    target = etcd_server.url(unique_prefix("copied"))

    copied = _tn("store", "copy", f"sqlite:{db}", target, "--json")
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["source"] == report["target"]
    assert report["target"]["revision"] == revision
    assert report["target"]["documents"]["port"] == 4
    assert "copied" in copied.stderr and "documents" in copied.stderr  # progress, not output

    (tmp_path / "etcd-side").mkdir()
    server = ServerProcess(tmp_path / "etcd-side" / "unused.db", env={"TUNNELNET_STORE": target})
    with server, server.client() as admin, Client(server.url, token) as tenant:
        assert _everything(admin) == before
        # the project's token was copied with its hash; allocations continue past the copy
        port = tenant.create("port", network_id=net_id, name="vm4")
        taken = [p for p in before["port"] if p["network_id"] == net_id]
        assert port["fixed_ips"][0]["ip_address"] not in {
            p["fixed_ips"][0]["ip_address"] for p in taken}
        assert port["mac_address"] not in {p["mac_address"] for p in before["port"]}
        with pytest.raises(ClientError, match="1234") as taken_vlan:
            admin.create("network", name="same-vlan",
                         **{"provider:network_type": "vlan",
                            "provider:physical_network": "physnet1",
                            "provider:segmentation_id": 1234})  # fmt: skip
        assert taken_vlan.value.status == 409  # the segment's claim came along
        # an agent that saw the source's last change resumes: it gets just what is new
        events, _ = admin.events(revision, timeout=0.5)
        assert [(e.resource, e.action) for e in events] == [("port", "create")]
        # one that saw less is told to list again, never handed a log with a hole
        with pytest.raises(ResyncRequired):
            admin.events(revision - 1, timeout=0.5)


def test_a_copy_goes_back_from_etcd_and_refuses_a_target_that_is_not_empty(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    db = tmp_path / "first.db"
    with ServerProcess(db) as source, source.client() as admin:
        _cloud(admin, source.url)
    middle = etcd_server.url(unique_prefix("middle"))
    assert _tn("store", "copy", f"sqlite:{db}", middle).returncode == 0
    back = tmp_path / "back.db"
    assert _tn("store", "copy", middle, f"sqlite:{back}").returncode == 0
    shown = [json.loads(_tn("store", "show", url, "--json").stdout)
             for url in (f"sqlite:{db}", middle, f"sqlite:{back}")]
    assert shown[0] == shown[1] == shown[2]

    again = _tn("store", "copy", f"sqlite:{db}", middle)
    assert again.returncode == 1
    assert "target store is not empty" in again.stderr and "Traceback" not in again.stderr
    assert json.loads(_tn("store", "show", middle, "--json").stdout) == shown[1]

    missing = _tn("store", "copy", f"sqlite:{tmp_path / 'nothing.db'}", f"sqlite:{back}2")
    assert missing.returncode == 1 and "no SQLite store at" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()
    bad = _tn("store", "show", "mysql://x")
    assert bad.returncode == 1 and "unknown scheme 'mysql'" in bad.stderr
