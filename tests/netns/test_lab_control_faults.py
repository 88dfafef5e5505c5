"""A clustered control plane losing parts while VMs talk and ports are being created: the lab
of ``[control] store = "etcd"`` (3 etcd members, 2 controllers, agents over TLS).

What must hold comes from the design (docs/architecture.md, "Control plane"): the datapath
never depends on the control plane, so no ping is lost whatever dies; an acknowledged create
is in the store (etcd acknowledges a write once a majority has it); a cluster that lost
quorum refuses writes at once with a JSON 503 that names the cause; agents keep their flows,
say so, and resume from their revision when it returns, never listing everything again.
Pings are judged by Linux's ping (sequence numbers of the replies), the 503 by httpx.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.lab_cli import run_lab, running_lab
from support.tools import require_tool

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "control_etcd.toml"
PREFIX = f"tnc{os.getpid() % 10000}"
SYNCED = "synced with controller"  # the agent's line for each full list of the controller
NO_CONTROLLER = "no controller answers"
ANSWERS_AGAIN = "a controller answers again"


def _tn(lab_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, timeout=timeout)


def _ok(lab_dir: Path, *args: str) -> str:
    done = _tn(lab_dir, *args)
    assert done.returncode == 0, f"lab {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("etcd")
    require_tool("etcdctl")
    require_tool("openssl")
    lab_dir = tmp_path_factory.mktemp("ctl")
    with running_lab(PREFIX, TOPOLOGY, lab_dir):
        yield lab_dir


def _state(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab_dir / "state.json").read_text())
    return data


def _pid(lab_dir: Path, name: str) -> int:
    return int(next(p["pid"] for p in _state(lab_dir)["processes"] if p["name"] == name))


def _status(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_ok(lab_dir, "status", "--json"))
    return data


class Pinger:
    """Linux ping from one VM to another every 10 ms; losses are the sequence numbers missing
    below the last one answered (what is still in flight when it stops is not a loss)."""

    def __init__(self, lab_dir: Path, src: str, dst_ip: str) -> None:
        netns = f"{PREFIX}-vm-{src}"
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-n", "-i", "0.01",
                                      dst_ip], stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, int]:
        """(replies, lost)."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        seqs = {int(s) for s in re.findall(r"icmp_seq=(\d+)", out)}
        assert seqs, f"no reply at all: {out[-500:]}"
        return len(seqs), len(set(range(min(seqs), max(seqs) + 1)) - seqs)


class Creator(threading.Thread):
    """Creates ports through the API (both controllers, over their unix sockets, failing over
    as any client of the list does) until stopped; keeps the ids the API acknowledged."""

    def __init__(self, lab_dir: Path) -> None:
        super().__init__(daemon=True)
        from tunnelnet.client.http import Client

        state = _state(lab_dir)
        self.client = Client(state["server_url"], state["admin_token"], timeout=20.0)
        self.network = state["networks"]["red-net"]["id"]
        self.acked: list[str] = []
        self.acked_at: list[float] = []  # monotonic time of each acknowledgement
        self.refused: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        from tunnelnet.errors import TunnelnetError

        n = 0
        while not self.halt.is_set():
            n += 1
            try:
                port = self.client.create("port", network_id=self.network, name=f"load-{n}",
                                          project_id="red")
                self.acked.append(str(port["id"]))
                self.acked_at.append(time.monotonic())
            except TunnelnetError as exc:
                self.refused.append(str(exc))
            self.halt.wait(0.05)

    def acked_since(self, moment: float) -> int:
        return sum(1 for t in self.acked_at if t > moment)

    def longest_stall(self) -> float:
        """The longest time between two acknowledgements: how long writes were held up."""
        times = self.acked_at
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=60)


def _agent_log(lab_dir: Path, hv: str) -> str:
    return (lab_dir / hv / "agent.log").read_text(errors="replace")


def _wait(what: str, ready: Any, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while not ready():
        assert time.monotonic() - started < timeout, f"{what}: not after {timeout:.0f}s"
        time.sleep(0.2)
    return time.monotonic() - started


def _members(lab_dir: Path) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = _status(lab_dir)["control"]["etcd"]
    return members


def test_losing_a_controller_an_etcd_member_then_quorum_loses_no_ping_and_no_create(
        lab: Path) -> None:
    status = _status(lab)
    control = status["control"]
    assert [c["name"] for c in control["controllers"]] == ["controller-1", "controller-2"]
    assert all(c["url"].startswith("https://198.18.0.") for c in control["controllers"])
    assert all(c["running"] and c["answers"] for c in control["controllers"])
    assert len(control["etcd"]) == 3 and all(m["healthy"] for m in control["etcd"])
    assert sum(m["leader"] for m in control["etcd"]) == 1
    red2 = next(vm for vm in status["vms"] if vm["name"] == "red2")
    # the agents talk to the controllers over TLS on the management network
    for hv in ("hv1", "hv2"):
        assert re.search(r"listed everything from https://198\.18\.0\.1[12]:9696 ",
                         _agent_log(lab, hv))

    # -- quorum kept: kill -9 one controller, then the etcd leader ---------------------------
    pinger = Pinger(lab, "red1", red2["ip"])
    creator = Creator(lab)
    creator.start()
    time.sleep(2)
    os.kill(_pid(lab, "controller-1"), signal.SIGKILL)
    time.sleep(3)
    leader = next(m["name"] for m in _members(lab) if m["leader"])
    os.kill(_pid(lab, leader), signal.SIGKILL)
    killed = time.monotonic()
    # writes go on once the two kills are absorbed: a controller killed while it held the
    # cluster's write lock holds writers up until etcd expires its lease (10 s; a new etcd
    # leader renews every lease first, as etcd does at each election)
    _wait("creates acknowledged after both kills", lambda: creator.acked_since(killed) >= 5,
          timeout=90)
    creator.finish()
    replies, lost = pinger.stop()
    print(f"\nquorum kept: {replies} replies, {lost} lost; {len(creator.acked)} creates "
          f"acknowledged, {len(creator.refused)} refused {creator.refused[:3]}; writes held "
          f"up at most {creator.longest_stall():.1f}s")
    assert lost == 0
    present = {p["id"] for p in creator.client.list("port", network_id=creator.network)}
    assert set(creator.acked) <= present
    # the agents follow the surviving controller: a VM booted now is bound and answers
    _ok(lab, "add-vm", "red3", "--network", "red-net", "--hypervisor", "hv2")
    assert "reached" in _ok(lab, "ping", "red1", "red3")
    status = _status(lab)
    assert all(vm["port_status"] == "ACTIVE" for vm in status["vms"])
    assert all(hv["agent_alive"] for hv in status["hypervisors"])

    # both come back with `lab start`, the member rejoining the cluster from its data
    _ok(lab, "start", "controller-1")
    _ok(lab, "start", leader)
    def whole() -> bool:
        control = _status(lab)["control"]
        return (all(m["healthy"] for m in control["etcd"])
                and all(c["answers"] for c in control["controllers"]))
    _wait("etcd healthy and both controllers answering again", whole)

    # -- quorum lost: two members stopped ----------------------------------------------------
    # what the agents said so far (an election above may have had them wait a moment too)
    seen = {hv: len(_agent_log(lab, hv)) for hv in ("hv1", "hv2")}
    pinger = Pinger(lab, "red1", red2["ip"])
    time.sleep(1)
    lost_two = [m["name"] for m in _members(lab)][:2]
    for name in lost_two:
        _ok(lab, "stop", name)
    socket = _state(lab)["control"]["controllers"][0]["unix"]
    body = {"network": {"name": "during-outage", "project_id": "red"}}
    token = {"X-Auth-Token": _state(lab)["admin_token"]}
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://lab",
                      timeout=30) as http:
        def refused() -> bool:
            return http.post("/v2.0/networks", json=body, headers=token).status_code == 503
        _wait("a write refused for lack of quorum", refused, timeout=30)
        started = time.monotonic()
        answer = http.post("/v2.0/networks", json=body, headers=token)
        took = time.monotonic() - started
    assert answer.status_code == 503
    error = answer.json()["NeutronError"]
    assert error["type"] == "ServiceUnavailable"
    assert "quorum" in error["message"] and "no leader" in error["message"]
    assert took < 2.0, f"a write without quorum took {took:.1f}s to be refused"
    for hv in ("hv1", "hv2"):
        _wait(f"{hv}'s agent saying it keeps its flows",
              lambda hv=hv: NO_CONTROLLER in _agent_log(lab, hv)[seen[hv]:], timeout=30)
    time.sleep(2)  # forwarding goes on while no controller can answer
    for name in lost_two:
        _ok(lab, "start", name)
    restored = time.monotonic()
    from tunnelnet.client.http import Client
    state = _state(lab)
    with Client(state["server_url"], state["admin_token"], timeout=20.0) as api:
        def writes() -> bool:
            from tunnelnet.errors import TunnelnetError
            try:
                api.create("network", name="after-outage", project_id="red")
                return True
            except TunnelnetError:
                return False
        to_write = _wait("a write accepted again", writes)
    _wait("every agent resumed", lambda: all(
        ANSWERS_AGAIN in _agent_log(lab, hv)[seen[hv]:] for hv in ("hv1", "hv2")))
    agents_back = time.monotonic() - restored
    replies, lost = pinger.stop()
    print(f"quorum lost: {replies} replies, {lost} lost; write refused in {took * 1000:.0f} "
          f"ms; after quorum returned: writes in {to_write:.1f}s, agents resumed within "
          f"{agents_back:.1f}s")
    assert lost == 0
    # resumed from their revision: one full list each, at start, and never again
    for hv in ("hv1", "hv2"):
        assert _agent_log(lab, hv).count(SYNCED) == 1
    _ok(lab, "add-vm", "red4", "--network", "red-net", "--hypervisor", "hv1")
    assert "reached" in _ok(lab, "ping", "red4", "red2")
