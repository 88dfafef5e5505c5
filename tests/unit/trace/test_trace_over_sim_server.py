"""`tunnelnet trace` and the web API over a simulated lab held by a sim server process (no
root): the same journey as over a real lab, asked through the server's ``labview`` op."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunnelnet.trace.sim_remote import SimRemoteLab
from tunnelnet.web.app import create_app

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"
SERVER = """
import sys
from pathlib import Path
from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_server import SimServer, record
from tunnelnet.lab.topology import load
from tunnelnet.trace.sim_remote import OP, handler
directory, topology = Path(sys.argv[1]), sys.argv[2]
lab = SimLab(load(topology))
lab.up()
record(lab, directory, topology)
SimServer(lab, directory, extra={OP: handler}).serve()
"""


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("simlab")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(directory), str(DEMO)],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (directory / "sim.sock").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"sim server did not start: {err}")
            time.sleep(0.05)
        yield directory
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _trace(sim_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", "trace", "--dir", str(sim_dir),
                           *args], capture_output=True, text=True, timeout=60, check=False)


def test_trace_command_walks_the_simulated_lab(sim_dir: Path) -> None:
    proc = _trace(sim_dir, "blue1", "blue2", "--json")
    assert proc.returncode == 0, proc.stderr
    j = json.loads(proc.stdout)
    tun = [(v["host"], [s["table"] for s in v["steps"]]) for v in j["visits"]
           if v["bridge"] == "br-tun"]
    assert tun == [("hv1", [0, 2, 20]), ("hv3", [0, 3, 10])]  # GRE: key -> VLAN in table 3
    assert j["encapsulation"][0]["key"] == 2002 and j["outcome"]["delivered"]
    text = _trace(sim_dir, "blue1", "blue2", "--explain")
    assert "Key-to-VLAN" in text.stdout.replace("\n    # ", " ")


def test_live_is_refused_on_a_simulated_lab_with_a_clear_message(sim_dir: Path) -> None:
    proc = _trace(sim_dir, "red1", "red3", "--live")
    assert proc.returncode == 2  # an error, not "not delivered"
    assert "needs a lab on real namespaces" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_vm_is_one_clear_line(sim_dir: Path) -> None:
    proc = _trace(sim_dir, "red1", "mallory")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no VM named 'mallory'" in proc.stderr


def test_web_api_over_the_simulated_lab(sim_dir: Path) -> None:
    client = TestClient(create_app(lambda: SimRemoteLab(sim_dir)))
    state = client.get("/api/state").json()
    assert {v["name"] for v in state["vms"]} == {"red1", "red2", "red3", "blue1", "blue2",
                                                 "blue3"}
    hv1 = next(h for h in state["hypervisors"] if h["name"] == "hv1")
    assert {t["type"] for t in hv1["tunnels"]} == {"vxlan", "gre"}
    j = client.get("/api/trace", params={"src": "red1", "dst": "red3"}).json()
    assert j["outcome"]["delivered"] and j["encapsulation"][0]["key"] == 1001
    flows = client.get("/api/flows", params={"host": "hv2", "bridge": "br-tun"}).json()
    assert any("table=4," in line and "tun_id=0x3e9" in line for line in flows["flows"])
    assert client.get("/").status_code == 200
    assert client.get("/static/vendor/cytoscape.min.js").status_code == 200
    # bad input: a clear 4xx with the bad part named
    bad = client.get("/api/trace", params={"src": "red1", "dst": "nobody"})
    assert bad.status_code == 400 and "nobody" in bad.json()["detail"]
    assert client.get("/api/trace", params={"src": "red1", "dst": "red3",
                                            "proto": "sctp"}).status_code == 400
    assert client.get("/api/flows", params={"host": "hv9", "bridge": "br-tun"}
                      ).status_code == 404
    assert client.get("/api/flows", params={"host": "hv1", "bridge": "br-x"}
                      ).status_code == 400
