"""How each measured datapath connects tapN to the other hypervisor over the underlay.

Each setup takes a built ``Lab`` and a private run directory and returns the pids whose CPU
time is the datapath's (none for the kernel's own). The peers are set up as their operators
would: Linux bridge / vxlan device; Open vSwitch's userspace datapath with its own ovsdb-server
and ovs-vswitchd per hypervisor and the underlay address on br-phy; tunnelnet's vswitchd with
the agent's br-int + br-tun pipeline (the flow builders the agent itself uses).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from bench.netlab import UNDERLAY, BenchError, Lab, run, wait_for
from tunnelnet.packet.tunnel import network_mtu

VNI = 1001
LOCAL_VLAN = 1
# the VM's MTU on a 1500-byte underlay comes from the tunnel-kind registry: VXLAN and Geneve
# 1500 - IPv4 20 - UDP 8 - header 8 - inner Ethernet 14 = 1450; GRE with key 1458
VXLAN_MTU = network_mtu("vxlan")
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"

Setup = Callable[[Lab, Path], list[int]]


def plain(lab: Lab, rundir: Path) -> list[int]:
    """No tunnel: the VM's veth and the uplink in one Linux bridge (the ceiling)."""
    for i in (1, 2):
        hv = lab.ns(f"hv{i}")
        run(["ip", "-n", hv, "link", "add", "br-vm", "type", "bridge"])
        run(["ip", "-n", hv, "link", "set", "br-vm", "up"])
        run(["ip", "-n", hv, "link", "set", f"tap{i}", "master", "br-vm"])
        run(["ip", "-n", hv, "addr", "flush", "dev", "eth0"])
        run(["ip", "-n", hv, "link", "set", "eth0", "master", "br-vm"])
    return []


def kernel_vxlan(lab: Lab, rundir: Path) -> list[int]:
    for i in (1, 2):
        hv = lab.ns(f"hv{i}")
        run(["ip", "-n", hv, "link", "add", "vx0", "type", "vxlan", "id", str(VNI),
             "remote", UNDERLAY.format(3 - i), "local", UNDERLAY.format(i), "dstport", "4789",
             "dev", "eth0"])
        run(["ip", "-n", hv, "link", "add", "br-vm", "type", "bridge"])
        run(["ip", "-n", hv, "link", "set", "br-vm", "up"])
        run(["ip", "-n", hv, "link", "set", "vx0", "master", "br-vm", "up"])
        run(["ip", "-n", hv, "link", "set", f"tap{i}", "master", "br-vm"])
    lab.vm_mtu(VXLAN_MTU)
    return []


def ovs(kind: str) -> Setup:
    def setup(lab: Lab, rundir: Path) -> list[int]:
        pids = []
        for i in (1, 2):
            pids.append(_ovs_host(lab, rundir / f"ovs-hv{i}", i, kind))
        lab.vm_mtu(network_mtu(kind))
        lab.offloads_off()
        return pids
    return setup


def _ovs_host(lab: Lab, d: Path, i: int, kind: str) -> int:
    hv = lab.ns(f"hv{i}")
    d.mkdir(parents=True)
    env = {"OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
    run(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA])
    lab.spawn(["ovsdb-server", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/db.pid",
               f"--log-file={d}/db.log", str(d / "conf.db")], netns=hv, log=d / "db.out",
              env=env)
    wait_for(lambda: (d / "db.sock").exists(), f"ovsdb-server on {hv}")

    def vsctl(*args: str) -> str:
        return run(["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=20", *args], env=env)

    vsctl("--no-wait", "init")
    proc = lab.spawn(["ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/sw.pid",
                      f"--log-file={d}/sw.log"], netns=hv, log=d / "sw.out", env=env)
    run(["ip", "-n", hv, "addr", "flush", "dev", "eth0"])
    vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
          "--", "add-port", "br-phy", "eth0")
    run(["ip", "-n", hv, "addr", "add", f"{UNDERLAY.format(i)}/24", "dev", "br-phy"])
    run(["ip", "-n", hv, "link", "set", "br-phy", "up"])
    vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
          "--", "add-port", "br-int", f"tap{i}",
          "--", "add-port", "br-int", "tun0", "--", "set", "interface", "tun0", f"type={kind}",
          f"options:remote_ip={UNDERLAY.format(3 - i)}", f"options:key={VNI}")
    return proc.pid


def tunnelnet(kind: str, fastpath: str = "off") -> Setup:
    """tunnelnet's vswitchd with the agent's pipeline; ``fastpath`` is its --fastpath (off:
    the Python path alone, as measured before issue #22; kernel: plans replayed by eBPF)."""
    def setup(lab: Lab, rundir: Path) -> list[int]:
        pids = []
        for i in (1, 2):
            pids.append(_tunnelnet_host(lab, rundir / f"tn-hv{i}", i, kind, fastpath))
        lab.vm_mtu(network_mtu(kind))
        # VM offloads stay on, as a guest's virtio-net negotiates them with its hypervisor:
        # the vswitchd takes TSO super-frames whole and hands the VM coalesced ones
        return pids
    return setup


def _tunnelnet_host(lab: Lab, d: Path, i: int, kind: str, fastpath: str) -> int:
    from tunnelnet.agent import br_int, br_tun
    from tunnelnet.datapath import messages as m
    from tunnelnet.datapath.control import ControlClient

    hv = lab.ns(f"hv{i}")
    d.mkdir(parents=True)
    proc = lab.spawn([sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir", str(d),
                      "--log-file", str(d / "vswitchd.log"), "--log-level", "warning",
                      "--fastpath", fastpath],
                     netns=hv, log=d / "vswitchd.out")

    def pong() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"tunnelnet vswitchd on {hv} exited; see {d}/vswitchd.out")
        with ControlClient(d, timeout=5) as c:
            c.call(m.Ping())
        return True

    wait_for(pong, f"tunnelnet vswitchd on {hv}")
    cookie = 0x1
    remote = UNDERLAY.format(3 - i)
    with ControlClient(d, timeout=20) as c:
        c.call(m.AddBridge("br-int", fail_mode="secure"))
        c.call(m.AddBridge("br-tun", fail_mode="secure"))
        c.call(m.AddPort("br-int", f"tap{i}", type="system", tag=LOCAL_VLAN))
        c.call(m.AddPort("br-int", "patch-tun", type="patch", options={"peer": "patch-int"}))
        patch_int = c.call(m.AddPort("br-tun", "patch-int", type="patch",
                                     options={"peer": "patch-tun"}))
        tun = c.call(m.AddPort("br-tun", f"{kind}-peer", type=kind,
                               options={"remote_ip": remote, "key": "flow",
                                        "local_ip": UNDERLAY.format(i)}))
        if not isinstance(patch_int, int) or not isinstance(tun, int):
            raise BenchError(f"tunnelnet vswitchd on {hv}: AddPort answered no ofport")
        c.call(m.AddFlows("br-int", [f.add_text(cookie) for f in br_int.default_flows()]))
        tun_flows = [
            *br_tun.default_flows(patch_int, cookie=cookie, arp_responder=False),
            br_tun.tunnel_port(kind, tun),
            br_tun.local_vlan(kind, LOCAL_VLAN, VNI),
        ]
        flood = br_tun.flood_to_tunnels(LOCAL_VLAN, VNI, [tun])
        assert flood is not None
        tun_flows.append(flood)
        c.call(m.AddFlows("br-tun", [f.add_text(cookie) for f in tun_flows]))
    return proc.pid


DATAPATHS: dict[str, Setup] = {
    "plain": plain,
    "kernel-vxlan": kernel_vxlan,
    "ovs-vxlan": ovs("vxlan"),
    "ovs-gre": ovs("gre"),
    "ovs-geneve": ovs("geneve"),
    "tunnelnet-vxlan": tunnelnet("vxlan"),
    "tunnelnet-vxlan-fastpath": tunnelnet("vxlan", "kernel"),
    "tunnelnet-gre": tunnelnet("gre"),
    "tunnelnet-gre-fastpath": tunnelnet("gre", "kernel"),
    "tunnelnet-geneve": tunnelnet("geneve"),
}
