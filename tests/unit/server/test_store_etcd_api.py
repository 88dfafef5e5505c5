"""The controller's API tests again, with the server processes on etcd instead of SQLite.

Each module runs in a pytest of its own with `TUNNELNET_STORE` pointing at the session's etcd
under a fresh prefix (the module's fixtures then start `tunnelnet server` on etcd, since
--store wins over the --db they pass), so no module sees another's state. The modules that
check the controller's behaviour through the store are here; the fuzzers and the schema
test exercise request parsing, which does not depend on the store, and would double the
time; concurrent creates and the watch fan-out are covered on etcd by test_store_etcd.py
(8 writer threads on two stores) and test_store_etcd_server.py (two controllers), which
take a fraction of their time. Left out on purpose: the server-process test of a generated
admin token (an etcd store refuses to generate one, see test_store_etcd_server.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.etcd import EtcdServer, etcd_server, unique_prefix
from tunnelnet.store.etcd import EtcdStore

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here

HERE = Path(__file__).parent
MODULES = [
    "test_server_api_agents.py",
    "test_server_api_crud.py",
    "test_server_api_geneve.py",
    "test_server_api_isolation.py",
    "test_server_api_restart.py",
    "test_server_api_watch.py",
    "test_server_port_statuses.py",
]


@pytest.mark.parametrize("module", MODULES)
def test_api_module_passes_on_etcd(module: str, etcd_server: EtcdServer) -> None:
    prefix = unique_prefix("api")
    env = {**os.environ, "TUNNELNET_STORE": etcd_server.url(prefix)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / module)],
        cwd=HERE.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
    store = EtcdStore([etcd_server.endpoint], prefix)
    try:  # the servers really kept their state in etcd
        assert store.current_revision() > 0
    finally:
        store.close()
