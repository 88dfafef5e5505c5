"""``lab move`` on the simulated lab: a VM live-migrates from hv1 to hv2 as under Nova.

Expectations come from how Neutron with Open vSwitch behaves after a live migration, not from
our output: the port is bound to, and ACTIVE on, the destination; with l2population every
other hypervisor's table 20 sends the VM's MAC into its tunnel to the destination's IP (from
the topology file); a frame to the VM walks to the destination and is delivered there; a
wrong request changes nothing at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tunnelnet.cli.main import main
from tunnelnet.lab.announce import rarp_frame
from tunnelnet.lab.sim import SimError, SimInputError, SimLab
from tunnelnet.lab.state import StateFile
from tunnelnet.lab.topology import load
from tunnelnet.packet.flowkey import extract_flow_key

TOPOLOGY = Path(__file__).resolve().parents[2] / "netns" / "topologies" / "move.toml"
AGES = re.compile(r"(duration|idle_age|hard_age)=[^,]*, ?")  # time passes; nothing else may
HV_IP = {"hv1": "192.0.2.21", "hv2": "192.0.2.22", "hv3": "192.0.2.23"}  # move.toml


def _lab(l2pop: bool) -> SimLab:
    lab = SimLab(load(TOPOLOGY), l2pop=l2pop)
    assert lab.up().converged
    return lab


def _table_20_for(lab: SimLab, host: str, mac: str) -> list[str]:
    """The remote IPs table 20 of HOST's br-tun sends MAC to (one per flow for it)."""
    switch = lab.switches[host]
    remote = {p.ofport: p.options.get("remote_ip", "") for p in switch.ports.values()
              if p.bridge == "br-tun"}
    out: list[str] = []
    for line in switch.bridge("br-tun").dump_flows():
        if "table=20," in line and f"dl_dst={mac}" in line:
            port = int(line.rsplit("output:", 1)[1].split(",")[0])
            out.append(remote[port])
    return out


def _binding(lab: SimLab, name: str) -> tuple[str, str]:
    with lab.store.read() as txn:
        doc = txn.get("port", lab.vms[name].port_id)
    assert doc is not None
    return str(doc["binding:host_id"]), str(doc["status"])


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "no-l2pop"])
def test_a_moved_vm_is_bound_active_and_reached_on_its_new_hypervisor(l2pop: bool) -> None:
    lab = _lab(l2pop)
    mac = lab.vms["mover"].mac
    moved = lab.move_vm("mover", "hv2")
    assert (moved.source, moved.destination, moved.port_status) == ("hv1", "hv2", "ACTIVE")
    assert [s for s, _ in moved.steps] == ["unplug", "plug", "bind", "wait-active"]
    assert _binding(lab, "mover") == ("hv2", "ACTIVE")
    assert lab.vms["mover"].hypervisor == "hv2"
    # the vNIC is on hv2's br-int only, with the same name
    vnic = lab.vms["mover"].vnic
    assert vnic in lab.switches["hv2"].ports and vnic not in lab.switches["hv1"].ports
    journey = lab.walker().journey("pinger", "mover")
    assert journey.outcome.delivered
    assert {(e.host, e.vm) for e in journey.outcome.ends if e.what == "delivered"} \
        == {("hv2", "mover")}
    assert [(e.from_host, e.outer_dst) for e in journey.encaps] == [("hv3", HV_IP["hv2"])]
    result = lab.ping("pinger", "mover")
    assert result.reached and result.answered_by == mac
    # the stayer on hv1 now reaches mover across a tunnel
    assert lab.ping("stay", "mover").reached
    # isolation held: blue's VM on hv2 with mover's address is still not reached from red
    assert not lab.ping("pinger", "blue1").reached
    if l2pop:
        assert _table_20_for(lab, "hv1", mac) == [HV_IP["hv2"]]
        assert _table_20_for(lab, "hv3", mac) == [HV_IP["hv2"]]
    # nobody sends the moved MAC to hv1 any more, and hv2 holds it locally
    for host in ("hv1", "hv2", "hv3"):
        assert HV_IP["hv1"] not in _table_20_for(lab, host, mac)
    assert _table_20_for(lab, "hv2", mac) == []


def test_moving_there_and_back_leaves_the_port_active_where_it_is() -> None:
    # the old host's agent must not report the port DOWN once it is bound elsewhere: agents
    # run in host order in a pass, so on the way back hv2's late DOWN would come last
    lab = _lab(l2pop=True)
    lab.move_vm("mover", "hv2")
    moved = lab.move_vm("mover", "hv1")
    assert moved.port_status == "ACTIVE"
    assert _binding(lab, "mover") == ("hv1", "ACTIVE")
    lab.converge()
    assert _binding(lab, "mover") == ("hv1", "ACTIVE")
    assert lab.ping("pinger", "mover").reached


def test_a_vm_moving_in_takes_away_what_table_10_had_learned_of_it_while_it_was_away() -> None:
    lab = _lab(l2pop=False)
    mac = lab.vms["mover"].mac
    lab.move_vm("mover", "hv2")
    # mover's announcement reaches hv1 (which keeps red-net for "stay") through its tunnel
    # from hv2: hv1's own learn() in table 10 writes "mover is behind hv2" into table 20
    tunnel = next(p for p in lab.switches["hv1"].ports.values()
                  if p.options.get("remote_ip") == HV_IP["hv2"])
    frame = rarp_frame(mac)
    key = extract_flow_key(frame, tunnel.ofport, tun_id=3001,  # red-net's VNI (move.toml)
                           tun_src=int(IPv4Address(HV_IP["hv2"])),
                           tun_dst=int(IPv4Address(HV_IP["hv1"])))
    lab.switches["hv1"].bridge("br-tun").process(key, len(frame))
    assert _table_20_for(lab, "hv1", mac) == [HV_IP["hv2"]]
    # it comes back: hv1 must no longer say that mover is behind hv2
    lab.move_vm("mover", "hv1")
    assert _table_20_for(lab, "hv1", mac) == []
    assert lab.ping("pinger", "mover").reached


def _everything(lab: SimLab) -> tuple[object, ...]:
    flows = {(hv, br): sorted(AGES.sub("", line) for line in sw.bridge(br).dump_flows())
             for hv, sw in lab.switches.items() for br in sw.bridges}
    switch_ports = {hv: sorted((p.name, p.bridge, p.ofport) for p in sw.ports.values())
                    for hv, sw in lab.switches.items()}
    return flows, switch_ports, dict(lab.vms), _binding(lab, "mover"), \
        lab.store.current_revision()


@pytest.mark.parametrize(("vm", "host", "error", "words"), [
    ("ghost", "hv2", SimInputError, "no VM named 'ghost'"),
    ("mover", "hv9", SimInputError, "unknown hypervisor 'hv9'"),
    ("mover", "hv1", SimInputError, "mover is already on hv1"),
    ("mover", "hv2", SimError, "the destination hypervisor hv2 is down"),
    ("mover", "hv3", SimError, "the source hypervisor hv1 is down"),
])
def test_a_move_that_cannot_be_made_changes_nothing(
        vm: str, host: str, error: type[Exception], words: str) -> None:
    lab = _lab(l2pop=True)
    if "destination" in words:
        lab.stop_agent("hv2")
    if "source" in words:
        lab.stop_agent("hv1")
    before = _everything(lab)
    with pytest.raises(error, match=words):
        lab.move_vm(vm, host)
    assert _everything(lab) == before


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("lab")
    assert main(["lab", "--dir", str(directory), "up", "--sim", str(TOPOLOGY)]) == 0
    try:
        yield directory
    finally:
        if StateFile(directory).exists():
            main(["lab", "--dir", str(directory), "down"])


@pytest.mark.timeout(120)
def test_lab_move_on_a_simulated_lab_prints_json_and_trace_then_goes_to_hv2(
        sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = ["lab", "--dir", str(sim_dir)]
    capsys.readouterr()
    assert main([*lab, "move", "mover", "hv2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["vm"], doc["from"], doc["to"], doc["port_status"]) == \
        ("mover", "hv1", "hv2", "ACTIVE")
    assert [s["step"] for s in doc["steps"]] == ["unplug", "plug", "bind", "wait-active"]
    assert doc["seconds"] >= 0
    assert main([*lab, "status", "--json"]) == 0
    vms = {v["name"]: v for v in json.loads(capsys.readouterr().out)["vms"]}
    assert (vms["mover"]["hypervisor"], vms["mover"]["port_status"]) == ("hv2", "ACTIVE")
    assert main(["trace", "--dir", str(sim_dir), "pinger", "mover", "--json"]) == 0
    journey = json.loads(capsys.readouterr().out)
    assert journey["outcome"]["delivered"]
    assert {e["outer_dst"] for e in journey["encapsulation"]} == {HV_IP["hv2"]}
    # wrong requests: exit 2, one line saying what, the lab unchanged
    for args, words in [(["mover", "hv2"], "already on hv2"), (["ghost", "hv1"], "ghost"),
                        (["mover", "hv7"], "unknown hypervisor 'hv7'")]:
        assert main([*lab, "move", *args]) == 2
        assert words in capsys.readouterr().err
    assert main([*lab, "stop", "agent-hv3"]) == 0
    capsys.readouterr()
    assert main([*lab, "move", "mover", "hv3"]) == 1
    assert "hypervisor hv3 is down" in capsys.readouterr().err
    assert main([*lab, "status", "--json"]) == 0
    vms = {v["name"]: v for v in json.loads(capsys.readouterr().out)["vms"]}
    assert vms["mover"]["hypervisor"] == "hv2"
