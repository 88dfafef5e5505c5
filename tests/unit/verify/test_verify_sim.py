"""verify against simulated labs (no root): the agents' switches as the simulation built
them verify clean, with and without l2population, with provider VLAN networks too; faults
made on a simulated switch's tables are named; the command's exit statuses."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelnet.client.http import Client
from tunnelnet.lab.sim import SimLab, sim_config
from tunnelnet.lab.topology import load
from tunnelnet.server.runner import BackgroundServer
from tunnelnet.verify.readers import LocalSimReader
from tunnelnet.verify.run import Report, Target, verify

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "examples" / "demo.toml"
VLAN = ROOT / "examples" / "vlan-vs-tunnel.toml"
GENEVE = ROOT / "examples" / "geneve.toml"


class Sim:
    def __init__(self, topology: Path, *, l2pop: bool = True, arp_responder: bool = False
                 ) -> None:
        topo = load(topology)
        token = secrets.token_hex(8)
        self.api = BackgroundServer(sim_config(topo).with_overrides(
            host="127.0.0.1", port=0, db=":memory:", admin_token=token)).start()
        self.lab = SimLab(topo, l2pop=l2pop, arp_responder=arp_responder,
                          controller=self.api.controller)
        assert self.lab.up().converged
        self.client = Client(self.api.url, token)

    def verify(self, *hosts: str) -> Report:
        targets = [Target(h, LocalSimReader(s)) for h, s in sorted(self.lab.switches.items())
                   if not hosts or h in hosts]
        return verify(self.client, targets)

    def close(self) -> None:
        self.client.close()
        self.api.stop()


@pytest.fixture
def demo() -> Iterator[Sim]:
    sim = Sim(DEMO)
    yield sim
    sim.close()


def _kinds(report: Report) -> set[tuple[str, str]]:
    return {(f.kind.value, f.bridge) for h in report.hosts for f in h.findings}


@pytest.mark.parametrize("topology,l2pop,arp", [(DEMO, True, True), (DEMO, False, False),
                                                (VLAN, True, False), (GENEVE, True, False)],
                         ids=["demo-l2pop-arp", "demo-full-mesh", "vlan-and-vxlan", "geneve"])
def test_a_converged_simulated_lab_verifies_clean(topology: Path, l2pop: bool,
                                                  arp: bool) -> None:
    sim = Sim(topology, l2pop=l2pop, arp_responder=arp)
    try:
        report = sim.verify()
        assert report.exit_code() == 0, [f.line() for h in report.hosts for f in h.findings]
        assert len(report.hosts) == len(sim.lab.switches)
        for host in report.hosts:
            assert host.flows_checked > 5 and host.cookie == sim.lab.agents[host.host].cookie
            # each network with a VM on the host has the VLAN its agent gave it
            lvm = sim.lab.agents[host.host].lvm.items()
            names = {n: sim.lab.network_ids[n] for n in sim.lab.network_ids}
            assert {names[n]: v for n, v in host.local_vlans.items()} == lvm
    finally:
        sim.close()


def test_faults_on_a_simulated_switch_are_named(demo: Sim) -> None:
    switch = demo.lab.switches["hv1"]
    tun = switch.bridge("br-tun")
    # a flood output and an l2population entry gone, a flow of an old generation added
    flood = next(f for f in tun.dump_flows() if "table=22" in f and "priority=1" in f)
    actions = flood.split("actions=")[1]
    match = flood.split("priority=1,")[1].split(" ")[0]
    tun.mod_flows(f"cookie={demo.lab.agents['hv1'].cookie:#x},table=22,priority=1,{match} "
                  f"actions={actions.rsplit(',', 1)[0]}", strict=True)
    l2pop = next(f for f in tun.dump_flows() if "table=20" in f and "priority=2" in f)
    tun.del_flows(f"table=20,priority=2,{l2pop.split('priority=2,')[1].split(' ')[0]}",
                  strict=True)
    tun.add_flow("cookie=0x5,table=0,priority=7,in_port=99 actions=output:98")
    report = demo.verify("hv1")
    assert _kinds(report) == {("wrong_actions", "br-tun"), ("missing_flow", "br-tun"),
                              ("stale_cookie", "br-tun"), ("dead_output", "br-tun")}
    assert report.to_json()["by_kind"] == {"dead_output": 1, "missing_flow": 1,
                                           "stale_cookie": 1, "wrong_actions": 1}
    assert report.exit_code() == 1
    assert demo.verify("hv2", "hv3").exit_code() == 0  # only hv1 was touched


def test_a_vnic_on_another_networks_vlan_and_an_unknown_tunnel_are_named(demo: Sim) -> None:
    switch = demo.lab.switches["hv1"]
    red1 = demo.lab.vms["red1"]
    vlans = demo.lab.agents["hv1"].lvm.items()
    blue = vlans[demo.lab.network_ids["blue-net"]]
    switch.set_port_tag("br-int", red1.vnic, blue)
    switch.add_port("br-tun", "vxlan-0a636363", type="vxlan",
                    options={"remote_ip": "10.99.99.99", "key": "flow"})
    (host,) = demo.verify("hv1").hosts
    found = {(f.kind.value, f.subject) for f in host.findings}
    assert found == {("wrong_vlan", red1.vnic), ("unknown_tunnel", "vxlan-0a636363")}


def test_a_provider_vnic_moved_and_its_translation_gone_are_named() -> None:
    sim = Sim(VLAN)
    try:
        vm = next(v for v in sim.lab.vms.values()
                  if next(n for n in sim.lab.topo.networks if n.name == v.network).type
                  == "vlan")
        switch = sim.lab.switches[vm.hypervisor]
        net_id = sim.lab.network_ids[vm.network]
        own = sim.lab.agents[vm.hypervisor].lvm.items()[net_id]
        switch.set_port_tag("br-int", vm.vnic, own + 100)
        (host,) = sim.verify(vm.hypervisor).hosts
        assert {(f.kind.value, f.subject) for f in host.findings} == {("wrong_vlan", vm.vnic)}
        # without br-int's provider VLAN -> local VLAN flow, the VLAN is read from the vNICs
        inbound = next(f for f in switch.bridge("br-int").dump_flows()
                       if f"mod_vlan_vid:{own}," in f)
        where = inbound.split("priority=")[1].split(" ")[0]
        switch.bridge("br-int").del_flows(f"table=0,priority={where}", strict=True)
        switch.set_port_tag("br-int", vm.vnic, own)
        (host,) = sim.verify(vm.hypervisor).hosts
        assert [f.kind.value for f in host.findings] == ["missing_flow"]
        assert host.local_vlans[vm.network] == own
        assert "vNICs" in host.vlan_source[vm.network]
    finally:
        sim.close()


def _tn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=180, check=False, env=env, cwd=ROOT)


def test_the_command_over_lab_up_sim_and_its_exit_statuses(tmp_path: Path) -> None:
    env = {**os.environ, "TUNNELNET_LAB_DIR": str(tmp_path / "sim")}
    none = _tn(env, "verify")
    assert none.returncode == 2 and "no lab is up" in none.stderr
    usage = _tn(env, "verify", "--server", "http://127.0.0.1:1")
    assert usage.returncode == 2 and "--vswitchd" in usage.stderr
    up = _tn(env, "lab", "up", "--sim", "examples/demo.toml")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        done = _tn(env, "verify", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert [h["host"] for h in report["hosts"]] == ["hv1", "hv2", "hv3"]
        assert report["timing"]["total_s"] >= report["timing"]["controller_s"] > 0
        assert "verify: [3/3] hv3" in done.stderr  # progress goes to stderr
        one = _tn(env, "verify", "--host", "hv2", "-q")
        assert one.returncode == 0 and one.stdout.startswith("hv2 (simulated): clean")
        assert one.stderr == ""
        unknown = _tn(env, "verify", "--host", "hv9")
        assert unknown.returncode == 2 and "no hypervisor 'hv9'" in unknown.stderr
    finally:
        down = _tn(env, "lab", "down")
        assert down.returncode == 0, down.stdout + down.stderr


class Garbling(LocalSimReader):
    """A switch that lists one flow in words verify's parser does not know."""

    def dump_flows(self, bridge: str) -> list[str]:
        extra = ["cookie=0x1, table=22, priority=5,frobnicate=1 actions=drop"]
        return [*super().dump_flows(bridge), *(extra if bridge == "br-tun" else [])]


def test_a_flow_verify_cannot_read_is_named_and_the_rest_still_judged(demo: Sim) -> None:
    switch = demo.lab.switches["hv1"]
    switch.bridge("br-tun").add_flow("cookie=0x5,table=0,priority=7,in_port=99 actions=drop")
    report = verify(demo.client, [Target("hv1", Garbling(switch))])
    (host,) = report.hosts
    assert host.error is None and report.exit_code() == 1
    assert {(f.kind.value, "frobnicate" in f.subject) for f in host.findings} == {
        ("unreadable_flow", True), ("stale_cookie", False)}


def test_a_switch_of_a_host_without_an_agent_cannot_be_verified(demo: Sim) -> None:
    report = verify(demo.client, [Target("hv1", LocalSimReader(demo.lab.switches["hv1"])),
                                  Target("hv9", LocalSimReader(demo.lab.switches["hv2"]))])
    assert report.exit_code() == 2 and report.hosts[0].clean
    assert "no agent on hv9" in (report.hosts[1].error or "")


def test_a_switch_that_does_not_answer_is_an_error_not_a_pass(demo: Sim, tmp_path: Path
                                                               ) -> None:
    from tunnelnet.verify.readers import vswitchd_reader

    report = verify(demo.client, [Target("hv1", vswitchd_reader(tmp_path, timeout=1.0))])
    assert report.exit_code() == 2
    assert str(tmp_path) in (report.hosts[0].error or "")


def test_a_translation_flow_changed_by_hand_is_blamed_not_the_vnics_it_disagrees_with(
        demo: Sim) -> None:
    switch = demo.lab.switches["hv1"]
    red = demo.lab.network_ids["red-net"]
    own = demo.lab.agents["hv1"].lvm.items()[red]
    tun = switch.bridge("br-tun")
    line = next(f for f in tun.dump_flows() if "table=4" in f and "tun_id=0x3e9" in f)
    cookie = line.split("cookie=")[1].split(",")[0]
    tun.mod_flows(f"cookie={cookie},table=4,priority=1,tun_id=0x3e9 "
                  "actions=mod_vlan_vid:9,resubmit(,10)", strict=True)
    (host,) = demo.verify("hv1").hosts
    (found,) = host.findings
    assert found.kind.value == "wrong_actions" and "tun_id=0x3e9" in found.subject
    assert f"mod_vlan_vid:{own}," in found.detail
    assert host.local_vlans["red-net"] == own and "vNICs' tag" in host.vlan_source["red-net"]


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
def test_after_a_vm_moves_every_hypervisor_verifies_clean(l2pop: bool) -> None:
    sim = Sim(DEMO, l2pop=l2pop)
    try:
        before = {h.host: h.flows_checked for h in sim.verify().hosts}
        sim.lab.move_vm("red1", "hv3")  # hv3 had no red VM: red-net arrives there
        report = sim.verify()
        assert report.exit_code() == 0, [f.line() for h in report.hosts for f in h.findings]
        hv3 = next(h for h in report.hosts if h.host == "hv3")
        assert "red-net" in hv3.local_vlans and hv3.flows_checked > before["hv3"]
    finally:
        sim.close()
