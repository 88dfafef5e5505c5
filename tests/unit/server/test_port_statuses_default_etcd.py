"""A big hypervisor's port status report against a controller on an etcd with etcd's own
default cap of 128 operations per transaction: the report is taken whole (the controller
writes it in transactions that fit), as the same ports reported one by one would be."""

from __future__ import annotations

from pathlib import Path

from support.controller import AGENT_TOKEN, ServerProcess
from support.etcd import EtcdServer, unique_prefix

ETCD_DEFAULT_MAX_TXN_OPS = 128  # etcd's --max-txn-ops when not given
PORTS = 120  # each written port is several operations: far over 128 in one transaction


def test_a_report_of_more_ports_than_one_etcd_transaction_holds_is_taken(
        tmp_path: Path) -> None:
    with EtcdServer(tmp_path, max_txn_ops=ETCD_DEFAULT_MAX_TXN_OPS) as etcd, \
            ServerProcess(tmp_path / "unused.db",
                          env={"TUNNELNET_STORE": etcd.url(unique_prefix("statuses"))}
                          ) as server, \
            server.client() as admin, server.client(AGENT_TOKEN) as agent:
        net = admin.create("network", name="big-hypervisor")
        ids = [admin.create("port", network_id=net["id"], **{"binding:host_id": "hv-big"})["id"]
               for _ in range(PORTS)]
        answer = agent.set_port_statuses(dict.fromkeys(ids, "ACTIVE"))
        assert sorted(answer["updated"]) == sorted(ids)
        assert {p["status"] for p in admin.list("port", network_id=net["id"])} == {"ACTIVE"}
