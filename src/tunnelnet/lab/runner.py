"""``lab up`` and ``lab down`` on real namespaces: the fabric, the daemons, the tenants.

The lab plays the operator and Nova: it creates each tenant's networks, subnets and ports
through the controller's API, then plugs each VM's vNIC into br-int carrying
``external_ids:iface-id`` = the port's id, exactly as Nova plugs a VM. Agents do the rest.
Control traffic (agents <-> controller) goes over a unix socket in the lab's run directory,
or, with ``[control] store = "etcd"``, over TLS on a management network of its own
(:mod:`tunnelnet.lab.control_plane`): either way the underlay carries nothing but tunnels, as
a capture of it shows.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.view import DEFAULT_TUNNEL_TYPES
from tunnelnet.client.http import Client
from tunnelnet.datapath import messages as m
from tunnelnet.datapath import tunnel_rx
from tunnelnet.datapath.control import ControlClient, socket_path
from tunnelnet.dhcp import plumbing
from tunnelnet.dhcp.config import DEVICE_OWNER
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import (
    control_plane,
    dhcp_client,
    fabric,
    links,
    names,
    ovs_host,
    pki,
    processes,
)
from tunnelnet.lab.state import LabState, LabStateError, ProcessRecord, StateFile, VmRecord
from tunnelnet.lab.topology import Topology, TopologyError, Vm, load
from tunnelnet.packet import tunnel_kinds

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

READY_TIMEOUT = 30.0
CONVERGE_TIMEOUT = 60.0
ADD_VM_WIRE_TIMEOUT = 20.0


def server_url(directory: Path) -> str:
    return f"unix:{directory / 'server.sock'}"


def hv_rundir(directory: Path, hypervisor: str) -> Path:
    return directory / hypervisor


def agent_tunnel_types(topo: Topology) -> str:
    """The agents' --tunnel-types: their defaults, and any other kind the topology uses (a
    kind no network uses would only add a full mesh of idle tunnel ports)."""
    used = {n.type for n in topo.networks if tunnel_kinds.is_tunnel(n.type)}
    return ",".join(k for k in tunnel_kinds.names() if k in used or k in DEFAULT_TUNNEL_TYPES)


def check_switches(topo: Topology) -> None:
    """Refuses, before anything is built, a tunnel kind some hypervisor's switch has no port
    for. Our vswitchd's kinds are those its datapath can receive (a parser each, tunnel_rx.py);
    Open vSwitch has every registered kind."""
    ours = tunnel_rx.kinds()
    missing = sorted({n.type for n in topo.networks if tunnel_kinds.is_tunnel(n.type)} - ours)
    hosts = [hv.name for hv in topo.hypervisors if hv.switch == "tunnelnet"]
    if missing and hosts:
        raise TopologyError(
            f"{', '.join(missing)} network(s) need a tunnel port that tunnelnet's vswitchd does "
            f"not have yet (hypervisors {', '.join(hosts)}): put them on switch = \"ovs\", or "
            "run the topology with --sim")


def dhcp_state_dir() -> Path:
    """Where the lab's DHCP agent keeps dnsmasq's files: not in the lab's directory, which
    may sit where user nobody (dnsmasq, once it has dropped root) cannot pass, but in /run,
    named after the lab's prefix as its namespaces are."""
    return Path("/run/tunnelnet-lab-dhcp") / names.PREFIX


def _dnsmasqs_with(arg: str) -> list[int]:
    """Pids of running dnsmasqs whose command line holds ``arg`` exactly."""
    wanted = arg.encode()
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if argv and argv[0].endswith(b"dnsmasq") and wanted in argv:
            found.append(int(proc.name))
    return found


def _planned_namespaces(topo: Topology) -> list[str]:
    return [names.UNDERLAY_NS, *(names.hypervisor_ns(h.name) for h in topo.hypervisors),
            *(names.vm_ns(v.name) for v in topo.vms),
            *([names.MGMT_NS] if topo.control.clustered else [])]


def _stop_order(proc: ProcessRecord) -> tuple[bool, ...]:
    """The DHCP agent first (it takes its ports off the switch and removes its namespaces),
    then the agents (nothing must reprogram a switch that is going away), the switches and
    controllers, the SQLite controller, and etcd last (controllers need it to the end)."""
    return (not proc.name.startswith("dhcp-agent"), not proc.name.startswith("agent"),
            proc.name.startswith("ovsdb-server"), proc.name == "server",
            proc.name.startswith("etcd-"))


def agent_controllers(state: LabState) -> list[str]:
    """The agents' --controller (and --ca-file): every controller over TLS on the management
    network when the control plane is clustered, else the one controller's unix socket."""
    control = state.control
    if control.get("controllers"):
        return ["--controller", ",".join(c["url"] for c in control["controllers"]),
                "--ca-file", str(control["ca"])]
    return ["--controller", state.server_url]


def topo_management(plan: control_plane.ControlPlan) -> str:
    return (f"{len(plan.members)} etcd members, controllers "
            f"{', '.join(c.address for c in plan.controllers)}, hypervisors "
            f"{', '.join(plan.hypervisors.values())}")


class LabRunner:
    def __init__(self, directory: Path, progress: Progress | None = None) -> None:
        self.directory = directory
        self.file = StateFile(directory)
        self.say: Progress = progress or (lambda _msg: None)

    # -- state helpers ----------------------------------------------------------------------

    def _record_netns(self, state: LabState) -> Callable[[str], None]:
        def record(name: str) -> None:
            if name not in state.namespaces:
                state.namespaces.append(name)
                self.file.save(state)
        return record

    def _spawn(self, state: LabState, name: str, argv: list[str], netns: str | None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.directory / "logs" / f"{name}.log"
        proc = processes.spawn(argv, netns=netns, log_path=log_path, env=env)
        state.processes = [p for p in state.processes if p.name != name]
        state.processes.append(ProcessRecord(name, proc.pid, netns, list(argv), dict(env or {})))
        self.file.save(state)
        return proc

    # -- one daemon at a time (to show that forwarding survives it) -------------------------

    def _record(self, state: LabState, name: str) -> ProcessRecord:
        for proc in state.processes:
            if proc.name == name:
                return proc
        known = ", ".join(p.name for p in state.processes)
        raise LabStateError(f"the lab has no daemon named {name!r} (daemons: {known})")

    def stop_process(self, name: str) -> int:
        """Stop one daemon (SIGTERM); returns its pid. The record stays, for ``start``."""
        state = self.file.load()
        record = self._record(state, name)
        processes.stop(record.pid)
        return record.pid

    def start_process(self, name: str) -> int:
        """Start a stopped daemon again with the command line it had; returns the new pid."""
        state = self.file.load()
        record = self._record(state, name)
        if processes.alive(record.pid):
            raise LabStateError(f"{name} is running (pid {record.pid}); stop it first")
        proc = self._spawn(state, name, record.argv, record.netns, record.env)
        return proc.pid

    def client(self, state: LabState) -> Client:
        return Client(state.server_url, state.admin_token, timeout=15.0)

    # -- up ---------------------------------------------------------------------------------

    def up(self, topology_path: str, *, l2pop: bool = True, arp_responder: bool = False
           ) -> LabState:
        topo = load(topology_path)
        check_switches(topo)
        if self.file.exists():
            raise LabStateError(f"a lab is already up (state in {self.file.path}); "
                                "take it down first with 'tunnelnet lab down'")
        taken = sorted(set(links.list_netns()) & set(_planned_namespaces(topo)))
        if taken:
            raise LabStateError(
                f"namespace(s) {', '.join(taken)} already exist: another lab is up on this "
                "machine (with another --dir?); take it down first")
        # files of an earlier lab that was taken down by hand must not leak into this one
        self._remove_files(LabState(hypervisors={hv.name: {} for hv in topo.hypervisors}))
        state = LabState(topology=str(Path(topology_path).resolve()),
                         admin_token=secrets.token_hex(16),
                         server_url=server_url(self.directory),
                         control={"store": topo.control.store.value})
        self.directory.mkdir(parents=True, exist_ok=True)
        self.file.save(state)
        try:
            self._up(topo, state, l2pop=l2pop, arp_responder=arp_responder)
        except BaseException:
            self.say("lab up failed: taking down what was made")
            self.down()
            raise
        return state

    def _up(self, topo: Topology, state: LabState, *, l2pop: bool,
            arp_responder: bool) -> None:
        self.say(f"underlay: bridge {names.UNDERLAY_BRIDGE} in namespace {names.UNDERLAY_NS}, "
                 f"{len(topo.hypervisors)} hypervisors on {topo.underlay_cidr}")
        fabric.build_underlay(topo, self._record_netns(state))
        for hv in topo.hypervisors:
            state.hypervisors[hv.name] = {"ip": hv.ip, "netns": names.hypervisor_ns(hv.name),
                                          "rundir": str(hv_rundir(self.directory, hv.name))}
        physnets = sorted({n.physical_network for n in topo.networks
                           if n.type in ("vlan", "flat") and n.physical_network})
        if physnets:
            self._build_physical_network(topo, physnets)
        if topo.control.clustered:
            self._start_control_plane(topo, state)
        else:
            self._start_server(topo, state)
        self._start_switches(topo, state)
        if physnets:
            self._make_physical_bridges(topo, state, physnets)
        self._start_agents(topo, state, l2pop=l2pop, arp_responder=arp_responder,
                           physnets=physnets)
        self._create_tenants(topo, state)
        self._plug_vms(topo, state)
        # after the VMs' ports: a DHCP port takes the first free address of its subnet,
        # which must not be one the topology gives a VM
        if topo.dhcp_host is not None:
            self._start_dhcp_agent(topo, state, topo.dhcp_host)
        self._wait_converged(state)
        self._lease_all(state, [vm.name for vm in topo.vms if topo.uses_dhcp(vm)])

    def _build_physical_network(self, topo: Topology, physnets: list[str]) -> None:
        """VLAN and flat networks need a second uplink per hypervisor, on the same switch."""
        for hv in topo.hypervisors:
            ns = names.hypervisor_ns(hv.name)
            links.veth(names.UNDERLAY_NS, names.physical_port(hv.name), ns,
                       names.PHYSICAL_UPLINK, mtu=topo.underlay_mtu)
            links.bridge(names.UNDERLAY_NS, names.UNDERLAY_BRIDGE, [names.physical_port(hv.name)])
            links.offloads_off(ns, names.PHYSICAL_UPLINK)
        vids = sorted({n.segment or 0 for n in topo.networks if n.type == "vlan"})
        if links.bridge_vlan_filtering(names.UNDERLAY_NS, names.UNDERLAY_BRIDGE):
            self.say(f"physical switch: told which VLANs each hypervisor port carries "
                     f"({', '.join(map(str, vids)) or 'untagged only'}) - the manual switch "
                     "configuration that tunnels never need")
        else:
            self.say("physical switch: WOULD need to be told which VLANs each hypervisor port "
                     "carries (the manual configuration tunnels never need), but this kernel's "
                     "bridge has no VLAN filtering: it passes every VLAN to every port")
        self.say(f"physical networks {', '.join(physnets)}: hypervisors' second uplink "
                 f"{names.PHYSICAL_UPLINK} on the same switch")

    def _make_physical_bridges(self, topo: Topology, state: LabState,
                               physnets: list[str]) -> None:
        """What an operator does once per hypervisor: br-<physnet> holding the uplink."""
        for hv in topo.hypervisors:
            rundir = hv_rundir(self.directory, hv.name)
            bridge = names.physical_bridge()
            if hv.switch == "ovs":
                ovs_host.vsctl(rundir, "--may-exist", "add-br", bridge, "--", "set", "bridge",
                               bridge, "datapath_type=netdev", "fail_mode=secure", "--",
                               "--may-exist", "add-port", bridge, names.PHYSICAL_UPLINK)
                continue
            with ControlClient(rundir, timeout=10.0) as ctl:
                ctl.call(m.AddBridge(bridge, fail_mode="secure", may_exist=True))
                ctl.call(m.AddPort(bridge, names.PHYSICAL_UPLINK, type="system",
                                   may_exist=True))
        mappings = ", ".join(f"{p}:{names.physical_bridge()}" for p in physnets)
        self.say(f"each hypervisor: {names.physical_bridge()} holds {names.PHYSICAL_UPLINK} "
                 f"(bridge mappings {mappings})")

    def _start_server(self, topo: Topology, state: LabState) -> None:
        db = self.directory / "server.db"
        sock = self.directory / "server.sock"
        config = self._server_config(topo)
        argv = processes.tunnelnet_argv("server", "--db", str(db), "--config", str(config),
                                        "--listen", "127.0.0.1:0", "--unix", str(sock))
        env = {"TUNNELNET_ADMIN_TOKEN": state.admin_token}
        proc = self._spawn(state, "server", argv, None, env)
        self.say(f"controller: tunnelnet server on {state.server_url}")
        self._wait_answers(state, state.server_url, "server", proc)

    def _server_config(self, topo: Topology) -> Path:
        config = self.directory / "server.toml"
        # every tunnel kind is offered to tenants; a dead agent is noticed within 15 s
        kinds = ", ".join(f'"{name}"' for name in tunnel_kinds.names())
        config.write_text(
            f"tenant_network_types = [{kinds}]\nunderlay_mtu = {topo.underlay_mtu}\n"
            "agent_down_time = 15.0\n")
        return config

    def _start_control_plane(self, topo: Topology, state: LabState) -> None:
        """etcd members and controllers in the management namespace (control_plane.py)."""
        plan = control_plane.plan(topo, self.directory)
        self.say(f"management network: bridge {names.MGMT_BRIDGE} in namespace "
                 f"{names.MGMT_NS}, {topo_management(plan)}")
        control_plane.build_network(plan, self._record_netns(state))
        certs = pki.make(plan.directory / "pki", [c.address for c in plan.controllers])
        state.control = plan.record(certs.ca)
        state.server_url = plan.lab_url
        self.file.save(state)
        token = secrets.token_hex(8)
        for member in plan.members:
            self._spawn(state, member.name, control_plane.etcd_argv(plan, member, token),
                        names.MGMT_NS)
        processes.wait_until(lambda: all(m["healthy"]
                                         for m in control_plane.member_status(state.control)),
                             f"etcd cluster of {len(plan.members)} members",
                             timeout=READY_TIMEOUT, interval=0.5)
        self.say(f"etcd: {len(plan.members)} members healthy "
                 f"({', '.join(m.client for m in plan.members)} in {names.MGMT_NS})")
        config = self._server_config(topo)
        env = {"TUNNELNET_ADMIN_TOKEN": state.admin_token}
        for index, controller in enumerate(plan.controllers):
            argv = processes.tunnelnet_argv(
                "server", "--store", plan.store_url(index), "--config", str(config),
                "--listen", f"{controller.address}:{control_plane.CONTROLLER_PORT}",
                "--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
                "--unix", str(controller.unix))
            proc = self._spawn(state, controller.name, argv, names.MGMT_NS, env)
            self._wait_answers(state, f"unix:{controller.unix}", controller.name, proc)
            self.say(f"controller: {controller.name} on {controller.url} (TLS, CA "
                     f"{certs.ca}) and unix:{controller.unix}")

    def _wait_answers(self, state: LabState, url: str, name: str,
                      proc: subprocess.Popen[bytes]) -> None:
        with Client(url, state.admin_token, timeout=15.0) as api:
            def answers() -> bool:
                try:
                    api.request("GET", "/")
                    return True
                except TunnelnetError:
                    return False
            processes.wait_until(answers, name, timeout=READY_TIMEOUT, proc=proc,
                                 log_path=self.directory / "logs" / f"{name}.log")

    def _start_switches(self, topo: Topology, state: LabState) -> None:
        for hv in topo.hypervisors:
            rundir = hv_rundir(self.directory, hv.name)
            rundir.mkdir(parents=True, exist_ok=True)
            state.hypervisors[hv.name]["switch"] = hv.switch
            if hv.switch == "ovs":
                self._start_ovs(topo, state, hv.name, hv.ip, rundir)
                continue
            argv = processes.tunnelnet_argv("vswitchd", "--rundir", str(rundir), "--persist",
                                            "--log-file", str(rundir / "vswitchd.log"))
            proc = self._spawn(state, f"vswitchd-{hv.name}", argv, names.hypervisor_ns(hv.name))
            sock = socket_path(rundir)
            processes.wait_until(sock.exists, f"vswitchd of {hv.name}",
                                 timeout=READY_TIMEOUT, proc=proc,
                                 log_path=rundir / "vswitchd.log")
            self.say(f"{hv.name}: vswitchd up (run dir {rundir})")

    def _start_ovs(self, topo: Topology, state: LabState, name: str, ip: str,
                   rundir: Path) -> None:
        netns = names.hypervisor_ns(name)
        env = ovs_host.ovs_env(rundir)
        ovs_host.create_db(rundir)
        db = self._spawn(state, f"ovsdb-server-{name}", ovs_host.db_server_argv(rundir),
                         netns, env)
        processes.wait_until((rundir / "db.sock").exists, f"ovsdb-server of {name}",
                             timeout=READY_TIMEOUT, proc=db)
        ovs_host.vsctl(rundir, "--no-wait", "init")
        sw = self._spawn(state, f"ovs-vswitchd-{name}", ovs_host.vswitchd_argv(rundir), netns,
                         env)
        processes.wait_until((rundir / "ovs-vswitchd.ctl").exists, f"ovs-vswitchd of {name}",
                             timeout=READY_TIMEOUT, proc=sw)
        prefix = ip_network(topo.underlay_cidr).prefixlen
        ovs_host.move_uplink_to_br_phy(rundir, netns, names.UPLINK, f"{ip}/{prefix}")
        self.say(f"{name}: Open vSwitch (userspace datapath) up, {ip} on br-phy "
                 f"(run dir {rundir})")

    def _start_agents(self, topo: Topology, state: LabState, *, l2pop: bool,
                      arp_responder: bool, physnets: list[str]) -> None:
        mappings = ",".join(f"{p}:{names.physical_bridge()}" for p in physnets)
        controllers = agent_controllers(state)
        for hv in topo.hypervisors:
            rundir = hv_rundir(self.directory, hv.name)
            switch = (["--switch", "ovs", "--ovs-rundir", str(rundir)]
                      if hv.switch == "ovs" else [])
            argv = processes.tunnelnet_argv(
                "agent", "--host", hv.name, *controllers,
                "--tunnel-ip", hv.ip, "--tunnel-types", agent_tunnel_types(topo),
                "--rundir", str(rundir),
                "--log-file", str(rundir / "agent.log"), *switch,
                *(["--bridge-mappings", mappings] if mappings else []),
                *(["--l2pop"] if l2pop else []), *(["--arp-responder"] if arp_responder else []))
            self._spawn(state, f"agent-{hv.name}", argv, names.hypervisor_ns(hv.name),
                        {"TUNNELNET_TOKEN": state.admin_token})
        with self.client(state) as api:
            def all_registered() -> bool:
                hosts = {a["host"] for a in api.list("agent") if a.get("alive")}
                return hosts >= {hv.name for hv in topo.hypervisors}
            processes.wait_until(all_registered, "agents registering", timeout=READY_TIMEOUT)
        self.say(f"agents: {len(topo.hypervisors)} registered"
                 f"{' (l2population on)' if l2pop else ''}")

    def _start_dhcp_agent(self, topo: Topology, state: LabState, hypervisor: str) -> None:
        """Neutron's DHCP agent on one hypervisor. It runs in the machine's own namespace,
        as it must to make the qdhcp namespaces (``ip netns exec`` would hide them from
        everyone else), and puts the DHCP ports' host ends into the hypervisor's namespace,
        where its switch is."""
        rundir = hv_rundir(self.directory, hypervisor)
        rundir.mkdir(parents=True, exist_ok=True)
        switch = (["--switch", "ovs", "--ovs-rundir", str(rundir)]
                  if topo.hypervisor(hypervisor).switch == "ovs" else [])
        state.hypervisors[hypervisor]["dhcp"] = str(dhcp_state_dir())
        self.file.save(state)
        argv = processes.tunnelnet_argv(
            "dhcp-agent", "--host", hypervisor, "--controller", state.server_url,
            "--rundir", str(rundir), "--state-dir", str(dhcp_state_dir()),
            "--netns-prefix", f"{names.PREFIX}-",
            "--host-netns", names.hypervisor_ns(hypervisor),
            "--log-file", str(rundir / "dhcp-agent.log"), *switch)
        self._spawn(state, f"dhcp-agent-{hypervisor}", argv, None,
                    {"TUNNELNET_TOKEN": state.admin_token})
        self.say(f"{hypervisor}: DHCP agent (dnsmasq per network, in "
                 f"{names.PREFIX}-qdhcp-<network id>)")

    def _create_tenants(self, topo: Topology, state: LabState) -> None:
        with self.client(state) as api:
            for net in topo.networks:
                dhcp = topo.dhcp_host is not None and net.dhcp
                body: dict[str, Any] = {"name": net.name, "project_id": net.tenant,
                                        "provider:network_type": net.type}
                if net.segment is not None:
                    body["provider:segmentation_id"] = net.segment
                if net.physical_network and net.type in ("vlan", "flat"):
                    body["provider:physical_network"] = net.physical_network
                created = api.create("network", **body)
                subnet = api.create("subnet", network_id=created["id"], project_id=net.tenant,
                                    cidr=net.cidr, ip_version=ip_network(net.cidr).version,
                                    name=f"{net.name}-subnet",
                                    enable_dhcp=dhcp,
                                    # the lab has no routers: every address is for VMs
                                    gateway_ip=None)
                state.networks[net.name] = {
                    "id": created["id"], "tenant": net.tenant, "type": net.type,
                    "segment": created.get("provider:segmentation_id"),
                    "mtu": created.get("mtu"), "cidr": net.cidr, "subnet_id": subnet["id"],
                    "dhcp": dhcp}
                self.say(f"tenant {net.tenant}: network {net.name} ({net.type} "
                         f"{created.get('provider:segmentation_id')}, {net.cidr}, "
                         f"MTU {created.get('mtu')})")
            self.file.save(state)

    def _plug_vms(self, topo: Topology, state: LabState) -> None:
        with self.client(state) as api:
            for vm in topo.vms:
                self._boot_vm(api, state, vm)

    def _boot_vm(self, api: Client, state: LabState, vm: Vm) -> VmRecord:
        """What Nova and the operator do for one VM: a port on the controller bound to the
        hypervisor, a VM namespace with the port's MAC and address, the vNIC on br-int."""
        if vm.name in state.vms:
            raise LabStateError(f"the lab already has a VM named {vm.name!r}")
        net = state.networks.get(vm.network)
        if net is None or vm.hypervisor not in state.hypervisors:
            raise LabStateError(f"VM {vm.name}: unknown network {vm.network!r} or hypervisor "
                                f"{vm.hypervisor!r}")
        fixed = [{"subnet_id": net["subnet_id"], **({"ip_address": vm.ip} if vm.ip else {})}]
        port = api.create("port", network_id=net["id"], project_id=vm.tenant, name=vm.name,
                          device_id=vm.name, device_owner="compute:lab", fixed_ips=fixed,
                          **{"binding:host_id": vm.hypervisor})
        ip = port["fixed_ips"][0]["ip_address"]
        prefix = ip_network(net["cidr"]).prefixlen
        mtu = int(net["mtu"] or 1450)
        # a VM on a DHCP network boots unconfigured and asks (after its port is wired); its
        # record holds the port's address until the lease says what it is
        dhcp = bool(net.get("dhcp"))
        tap = fabric.build_vm(vm.name, vm.hypervisor, self._record_netns(state),
                              port_id=port["id"], mtu=mtu, ip=None if dhcp else ip,
                              prefixlen=prefix,
                              mac=port["mac_address"],
                              offloads=state.hypervisors[vm.hypervisor].get("switch") != "ovs")
        record = VmRecord(name=vm.name, tenant=vm.tenant, network=vm.network,
                          hypervisor=vm.hypervisor, netns=names.vm_ns(vm.name),
                          port_id=port["id"], mac=port["mac_address"], ip=ip, mtu=mtu, tap=tap)
        state.vms[vm.name] = record
        self.file.save(state)
        self.plug(state, vm.hypervisor, tap, port["id"], port["mac_address"])
        self.say(f"{vm.hypervisor}: VM {vm.name} ({vm.tenant}/{vm.network}) "
                 f"{ip} {port['mac_address']} on {tap}")
        return record

    def add_vm(self, vm: Vm) -> VmRecord:
        """Boot one more VM in a running lab (its tenant is its network's)."""
        state = self.file.load()
        with self.client(state) as api:
            record = self._boot_vm(api, state, vm)
            if not state.networks[vm.network].get("dhcp"):
                return record

            def wired() -> bool:
                ports = api.list("port", network_id=state.networks[vm.network]["id"])
                return (any(p["id"] == record.port_id and p["status"] == "ACTIVE"
                            for p in ports)
                        and any(p["device_owner"] == DEVICE_OWNER and p["status"] == "ACTIVE"
                                for p in ports))
            try:
                processes.wait_until(wired, f"{vm.name}'s port and its DHCP port ACTIVE",
                                     timeout=ADD_VM_WIRE_TIMEOUT)
            except processes.ProcessError:
                # a booted VM whose port nobody binds (its agent stopped) asks in vain, as a
                # real one would; the lab says so instead of failing the boot
                self.say(f"{vm.hypervisor}: VM {vm.name} has no lease: its port or the DHCP "
                         f"port is not ACTIVE (is agent-{vm.hypervisor} running?); ask again "
                         f"later: tunnelnet lab exec {vm.name} -- udhcpc -i eth0 -q -n")
                return record
        self._lease_all(state, [vm.name])
        return state.vms[vm.name]

    def plug(self, state: LabState, hypervisor: str, tap: str, port_id: str, mac: str) -> None:
        """What Nova does: the vNIC joins br-int, named by its controller port's id."""
        rundir = Path(state.hypervisors[hypervisor]["rundir"])
        if state.hypervisors[hypervisor].get("switch") == "ovs":
            processes.wait_until(lambda: ovs_host.has_bridge(rundir, "br-int"),
                                 f"br-int on {hypervisor}", timeout=READY_TIMEOUT)
            ovs_host.plug(rundir, tap, port_id, mac)
            return
        with ControlClient(rundir, timeout=10.0) as ctl:
            def has_br_int() -> bool:
                return "br-int" in {b["name"] for b in ctl.call(m.Show())}
            processes.wait_until(has_br_int, f"br-int on {hypervisor}", timeout=READY_TIMEOUT)
            # plugged on the dead VLAN, as os-vif isolates a VIF: until its agent binds it,
            # an untagged port would be a trunk of every tenant's VLAN on this host
            ctl.call(m.AddPort("br-int", tap, type="system", may_exist=True, tag=DEAD_VLAN,
                               external_ids={"iface-id": port_id, "attached-mac": mac,
                                             "iface-status": "active"}))

    def _wait_converged(self, state: LabState) -> None:
        started = time.monotonic()
        dhcp_networks = {n["id"] for n in state.networks.values() if n.get("dhcp")}
        with self.client(state) as api:
            def all_active() -> bool:
                ports = api.list("port")
                status = {p["id"]: p["status"] for p in ports}
                served = {p["network_id"] for p in ports if p["device_owner"] == DEVICE_OWNER
                          and p["status"] == "ACTIVE"}
                return (all(status.get(vm.port_id) == "ACTIVE" for vm in state.vms.values())
                        and served >= dhcp_networks)
            processes.wait_until(all_active, "every VM port and DHCP port ACTIVE",
                                 timeout=CONVERGE_TIMEOUT)
        dhcp = f" and {len(dhcp_networks)} DHCP ports" if dhcp_networks else ""
        self.say(f"converged: {len(state.vms)} VM ports{dhcp} ACTIVE after "
                 f"{time.monotonic() - started:.1f}s")

    def _lease_all(self, state: LabState, vms: list[str]) -> None:
        """Each VM asks DHCP (a real udhcpc, all at once) and is configured as the lease
        says; its record then holds the lease's address and MTU."""
        if not vms:
            return
        leases = self.directory / "leases"
        leases.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        clients = {name: dhcp_client.start(state.vms[name].netns, "eth0",
                                           leases / f"{name}.lease") for name in vms}
        for name, proc in clients.items():
            record = state.vms[name]
            lease = dhcp_client.finish(proc, leases / f"{name}.lease", f"VM {name}")
            dhcp_client.apply(record.netns, "eth0", lease)
            record.ip = lease.ip
            record.mtu = lease.mtu or fabric.DEFAULT_MTU
            self.say(f"{record.hypervisor}: VM {name} leased {lease.ip}/{lease.prefixlen} "
                     f"MTU {lease.mtu} from {lease.server}")
        self.file.save(state)
        self.say(f"DHCP: {len(vms)} VMs configured by their leases after "
                 f"{time.monotonic() - started:.1f}s")

    # -- down -------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every recorded daemon and remove every recorded namespace; returns leftovers."""
        state = self.file.load()
        order = sorted(state.processes, key=_stop_order)
        for proc in order:
            processes.stop(proc.pid)
            self.say(f"stopped {proc.name} (pid {proc.pid})")
        self._remove_dhcp_leftovers(state)
        left = fabric.teardown(state.namespaces)
        for ns in state.namespaces:
            if ns not in left:
                self.say(f"removed namespace {ns}")
        if left:
            raise LabStateError(f"namespaces still present after lab down: {', '.join(left)}")
        self._remove_files(state)
        self.file.remove()
        return left

    def _remove_dhcp_leftovers(self, state: LabState) -> None:
        """What a DHCP agent that died without cleaning up left: its dnsmasqs (found by the
        pid file named on their command line, one per network this lab made) and its
        namespaces (named from those networks)."""
        for info in state.hypervisors.values():
            if not info.get("dhcp"):
                continue
            for net in state.networks.values():
                pid_arg = f"--pid-file={Path(info['dhcp']) / str(net['id']) / 'pid'}"
                for pid in _dnsmasqs_with(pid_arg):
                    processes.stop(pid)
                    self.say(f"stopped a leftover dnsmasq (pid {pid})")
                ns = plumbing.namespace_name(f"{names.PREFIX}-", str(net["id"]))
                if ns in links.list_netns():
                    links.delete_netns(ns)
                    self.say(f"removed leftover namespace {ns}")

    def _remove_files(self, state: LabState) -> None:
        """The lab's own files: database, config, logs, per-hypervisor run directories."""
        for name in ("server.sock", "server.db", "server.db-wal", "server.db-shm",
                     "server.db.admin-token", "server.toml"):
            (self.directory / name).unlink(missing_ok=True)
        for sub in ["logs", "leases", control_plane.CONTROL_DIR, *state.hypervisors]:
            shutil.rmtree(self.directory / sub, ignore_errors=True)
        for info in state.hypervisors.values():
            if info.get("dhcp"):
                shutil.rmtree(info["dhcp"], ignore_errors=True)
