"""``lab move`` on real namespaces: a VM live-migrates from hv1 to hv2 while a VM on hv3 pings
it every 10 ms, with and without l2population (one lab each).

The judges are not ours: ping's own statistics count the replies lost (and its -D timestamps
give the longest silence), Linux says where the tap is, and the expected tunnel endpoint is
hv2's underlay address from the topology file. Required (issue 20): at most 2 s of replies
lost, and afterwards no hypervisor's table 20 sends the moved MAC anywhere but to hv2; moved
back, hv1 holds no entry for it any more.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import run_lab, running_lab
from support.pinger import Pinger
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "move.toml"
HV_IP = {"hv1": "192.0.2.21", "hv2": "192.0.2.22", "hv3": "192.0.2.23"}  # move.toml
MOVER_IP = "10.0.0.11"
INTERVAL = 0.01  # the issue's: a ping every 10 ms
MAX_SILENCE = 2.0  # the bound on replies lost during the move


def _tn(lab: dict[str, object], *args: str, timeout: float = 240
        ) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return run_lab(str(lab["prefix"]), Path(str(lab["dir"])), *rest, command=command,
                   timeout=timeout)


def _status(lab: dict[str, object]) -> dict[str, dict[str, object]]:
    out = _tn(lab, "lab", "status", "--json")
    assert out.returncode == 0, out.stderr
    return {v["name"]: v for v in json.loads(out.stdout)["vms"]}


@pytest.fixture(scope="module", params=[True, False], ids=["l2pop", "no-l2pop"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[dict[str, object]]:
    l2pop = bool(request.param)
    # our own prefix per mode: these labs can be up beside anybody else's
    prefix = f"tmv{os.getpid() % 10000}{'l' if l2pop else 'n'}"
    lab: dict[str, object] = {"dir": tmp_path_factory.mktemp("lab"), "prefix": prefix,
                              "l2pop": l2pop}
    with running_lab(prefix, TOPOLOGY, Path(str(lab["dir"])),
                     "--l2pop" if l2pop else "--no-l2pop"):
        yield lab


def _links(netns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", netns, "-json", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


@pytest.mark.timeout(240)
def test_a_move_that_cannot_be_made_is_refused_and_changes_nothing(
        lab: dict[str, object]) -> None:
    if not lab["l2pop"]:
        pytest.skip("a refusal happens before anything l2population touches: shown once, on "
                    "the l2pop lab, to keep the suite short")
    before = _status(lab)
    tap = str(before["mover"]["tap"])
    for args, code, words in [
        (["ghost", "hv2"], 2, "no VM named 'ghost'"),
        (["mover", "hv9"], 2, "unknown hypervisor 'hv9'"),
        (["mover", "hv1"], 2, "mover is already on hv1"),
    ]:
        out = _tn(lab, "lab", "move", *args, "--json")
        assert out.returncode == code and words in out.stderr, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
    stopped = _tn(lab, "lab", "stop", "agent-hv2")
    assert stopped.returncode == 0, stopped.stderr
    try:
        out = _tn(lab, "lab", "move", "mover", "hv2")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "destination hypervisor hv2 is down" in out.stderr
        assert "nothing was changed" in out.stderr
    finally:
        assert _tn(lab, "lab", "start", "agent-hv2").returncode == 0
    assert _status(lab) == before
    # Linux: the tap is still hv1's
    assert tap in _links(f"{lab['prefix']}-hv1") and tap not in _links(f"{lab['prefix']}-hv2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = json.loads(_tn(lab, "lab", "status", "--json").stdout)
        if all(hv["agent_alive"] for hv in out["hypervisors"]):
            break
        time.sleep(0.5)
    else:
        pytest.fail("agent-hv2 did not come back")


def _table_20_remotes(lab: dict[str, object], host: str, mac: str) -> list[str]:
    """Where HOST's br-tun table 20 sends MAC: the remote_ip of each flow's output port, as
    its vswitchd's dump-flows and show answer over the control socket."""
    with ControlClient(Path(str(lab["dir"])) / host, timeout=30) as ctl:
        br_tun = next(b for b in ctl.call(m.Show()) if b["name"] == "br-tun")
        flows = ctl.call(m.DumpFlows("br-tun", "table=20"))
    remote = {p["ofport"]: p["options"].get("remote_ip") for p in br_tun["ports"]}
    return [str(remote[int(line.rsplit("output:", 1)[1].split(",")[0])])
            for line in flows if f"dl_dst={mac}" in line]


@pytest.mark.timeout(240)
def test_a_vm_moved_while_pinged_every_10ms_loses_at_most_2s_and_no_host_sends_to_hv1(
        lab: dict[str, object]) -> None:
    before = _status(lab)
    mac, tap = str(before["mover"]["mac"]), str(before["mover"]["tap"])
    prefix = lab["prefix"]
    with Pinger(f"{prefix}-vm-pinger", MOVER_IP, interval=INTERVAL) as pinger:
        time.sleep(1.0)  # the ping runs steadily before the move
        moved = _tn(lab, "lab", "move", "mover", "hv2", "--json")
        time.sleep(1.0)  # and after it
        run = pinger.stop()
    assert moved.returncode == 0, moved.stdout + moved.stderr
    doc = json.loads(moved.stdout)
    assert (doc["from"], doc["to"], doc["port_status"]) == ("hv1", "hv2", "ACTIVE")
    assert [s["step"] for s in doc["steps"]] == ["unplug", "move-link", "plug", "bind",
                                                 "wait-active", "announce"]
    sent, lost, silence = run.sent, run.lost, run.silence
    mode = "l2pop" if lab["l2pop"] else "no-l2pop"
    figures = (f"[{mode}] move hv1->hv2: {lost} of {sent} pings lost "
               f"({lost * INTERVAL:.2f} s at 10 ms), longest silence {silence:.3f} s; "
               f"move steps {[(s['step'], s['seconds']) for s in doc['steps']]}")
    print(figures)
    assert lost * INTERVAL <= MAX_SILENCE, figures
    assert silence <= MAX_SILENCE, figures
    assert run.received > 0.5 * sent, figures  # the VM answered before and after

    # where things are now: the controller, Linux, and every hypervisor's table 20
    after = _status(lab)
    assert (after["mover"]["hypervisor"], after["mover"]["port_status"]) == ("hv2", "ACTIVE")
    assert (after["mover"]["ip"], after["mover"]["mac"]) == (MOVER_IP, mac)
    assert tap in _links(f"{prefix}-hv2") and tap not in _links(f"{prefix}-hv1")
    for host in ("hv1", "hv3"):  # both carry red-net: each must know mover is behind hv2
        remotes = _table_20_remotes(lab, host, mac)
        assert remotes and set(remotes) == {HV_IP["hv2"]}, (host, remotes)
    assert HV_IP["hv1"] not in _table_20_remotes(lab, "hv2", mac)
    # the others still reach it, and blue's VM with its address is still not reached
    assert _tn(lab, "lab", "ping", "stay", "mover").returncode == 0
    assert _tn(lab, "lab", "ping", "pinger", "blue1").returncode == 1
    again = _tn(lab, "lab", "move", "mover", "hv2")
    assert again.returncode == 2 and "already on hv2" in again.stderr
    # every hypervisor holds what the controller now intends, nothing left of hv1's copy
    verified = _tn(lab, "verify", "--dir", str(lab["dir"]), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["clean"] is True

    # and back: hv1, which had learned (or been told) that mover is behind hv2, must forget
    # it, and the others must send it to hv1 again
    back = _tn(lab, "lab", "move", "mover", "hv1")
    assert back.returncode == 0, back.stdout + back.stderr
    assert _table_20_remotes(lab, "hv1", mac) == []
    assert set(_table_20_remotes(lab, "hv3", mac)) == {HV_IP["hv1"]}
    assert _tn(lab, "lab", "ping", "pinger", "mover").returncode == 0
