"""Answers control requests against a Switchboard: one method per operation, results as JSON
data (the CLI formats them). Every refusal is a TunnelnetError with the bad part named, raised
before anything changed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunnelnet import __version__
from tunnelnet.datapath import learning_config, persist
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.flow_snapshot import SnapshotWriter
from tunnelnet.datapath.ports import PatchPort, PortKind
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.datapath.tunnel import TunnelPort
from tunnelnet.packet.pmtu import SUMMARY as OVERSIZE_WORDS
from tunnelnet.packet.tunnel_kinds import INNER_ETHERNET

# requests that change the configuration that persists across restarts (not flows)
_CONFIG_CHANGES: tuple[type[m.Request], ...] = (m.AddBridge, m.DelBridge, m.AddPort,
                                                m.DelPort, m.SetPort, m.SetInterface,
                                                m.SetBridge)
# requests that change flows, which the flow snapshot follows (flow_snapshot.py)
_FLOW_CHANGES: tuple[type[m.Request], ...] = (m.AddFlows, m.ModFlows, m.DelFlows)


class Service:
    def __init__(self, board: Switchboard, config_path: Path | None = None,
                 snapshots: SnapshotWriter | None = None) -> None:
        self.board = board
        self.config_path = config_path
        self.snapshots = snapshots
        self._handlers: dict[type[m.Request], Callable[[Any], m.JSON]] = {
            m.AddBridge: self._add_bridge,
            m.DelBridge: self._del_bridge,
            m.AddPort: self._add_port,
            m.DelPort: self._del_port,
            m.SetPort: self._set_port,
            m.SetInterface: self._set_interface,
            m.ListInterfaces: self._list_interfaces,
            m.BfdShow: self._bfd_show,
            m.ListBridges: lambda _r: sorted(self.board.bridges),
            m.ListPorts: self._list_ports,
            m.Show: lambda _r: self.show(),
            m.AddFlows: self._add_flows,
            m.ModFlows: self._mod_flows,
            m.DelFlows: self._del_flows,
            m.DumpFlows: self._dump_flows,
            m.DumpPorts: self._dump_ports,
            m.TraceFlow: self._trace,
            m.DumpDrops: self._dump_drops,
            m.SetBridge: self._set_bridge,
            m.FdbShow: self._fdb_show,
            m.DatapathStats: lambda _r: self._dp_stats(),
            m.Ping: lambda _r: {"pid": os.getpid(), "version": __version__,
                                "protocol": m.PROTOCOL_VERSION},
        }

    def __call__(self, request: m.Request) -> m.JSON:
        # counters and ages as of now (the kernel's folded in), nothing pending under a change
        self.board.sync()
        result = self._handlers[type(request)](request)
        # a change that ends a plan takes it out of the kernel before the caller hears back
        self.board.check_kernel()
        if self.config_path is not None and isinstance(request, _CONFIG_CHANGES):
            persist.save(self.board, self.config_path)
        if self.snapshots is not None and isinstance(request, _CONFIG_CHANGES + _FLOW_CHANGES):
            self.snapshots.changed()
        return result

    def _fastpath(self) -> dict[str, m.JSON]:
        return {"mode": self.board.fastpath_mode, "why": self.board.fastpath_why}

    def _dp_stats(self) -> m.JSON:
        stats: dict[str, m.JSON] = {**self.board.plans.stats(), "fastpath": self._fastpath()}
        if self.board.kernel is not None:
            stats.update(self.board.kernel.stats())
            stats["kernel_upcalls_read"] = self.board.kernel.upcalls_read
        return stats

    def _add_bridge(self, r: m.AddBridge) -> m.JSON:
        self.board.add_bridge(r.bridge, r.fail_mode, r.may_exist)
        return None

    def _set_bridge(self, r: m.SetBridge) -> m.JSON:
        bridge = self.board.bridge(r.bridge).bridge  # an unknown bridge: refused first
        learning_config.apply(bridge, learning_config.parse(r.other_config))
        return None

    def _fdb_show(self, r: m.FdbShow) -> m.JSON:
        bridge = self.board.bridge(r.bridge).bridge
        table = bridge.mac_table
        learned = [{"table": t, "vlan": v, "flows": n}
                   for (t, v), n in sorted(bridge.learned_per_vlan().items(),
                                           key=lambda item: (item[0][0], item[0][1] or -1))]
        return {"other_config": learning_config.describe(bridge),
                "macs": len(table), "macs_per_vlan": {str(v): n for v, n in
                                                      sorted(table.per_vlan().items())},
                "mac_limit_hits": table.limit_hits,
                "learned_flows": learned, "learn_limit_hits": bridge.learn_limit_hits,
                "fdb": bridge.fdb_show()}

    def _del_bridge(self, r: m.DelBridge) -> m.JSON:
        self.board.del_bridge(r.bridge, r.if_exists)
        return None

    def _add_port(self, r: m.AddPort) -> m.JSON:
        return self.board.add_port(
            r.bridge, r.port, PortKind.parse(r.type), tag=r.tag, ofport=r.ofport,
            options=r.options, external_ids=r.external_ids, may_exist=r.may_exist, bfd=r.bfd,
        )

    def _del_port(self, r: m.DelPort) -> m.JSON:
        self.board.del_port(r.bridge, r.port, r.if_exists)
        return None

    def _set_port(self, r: m.SetPort) -> m.JSON:
        self.board.set_port(r.bridge, r.port, tag=r.tag, clear_tag=r.clear_tag,
                            external_ids=r.external_ids)
        return None

    def _set_interface(self, r: m.SetInterface) -> m.JSON:
        self.board.set_interface_bfd(r.interface, r.bfd, replace=r.replace)
        return None

    def _list_interfaces(self, r: m.ListInterfaces) -> m.JSON:
        found = []
        for bridge in sorted(self.board.bridges):
            for info in self._ports_of(bridge):
                if r.interface in ("", info["name"]):
                    info.setdefault("bfd", {})
                    info.setdefault("bfd_status", {})
                    info["bridge"] = bridge
                    found.append(info)
        if r.interface and not found:
            raise DatapathError(f"no interface named {r.interface!r}")
        return sorted(found, key=lambda i: str(i["name"]))

    def _bfd_show(self, r: m.BfdShow) -> m.JSON:
        sessions = sorted(self.board.bfd.sessions())
        if r.interface:
            if r.interface not in self.board.ports:
                raise DatapathError(f"no interface named {r.interface!r}")
            if r.interface not in sessions:
                raise DatapathError(f"interface {r.interface!r} has no BFD session "
                                    "(vsctl set interface NAME bfd:enable=true)")
            sessions = [r.interface]
        return {name: self.board.bfd.detail(name) for name in sessions}

    def _list_ports(self, r: m.ListPorts) -> m.JSON:
        return sorted(self._ports_of(r.bridge), key=lambda p: str(p["name"]))

    def _ports_of(self, bridge: str) -> list[dict[str, object]]:
        state = self.board.bridge(bridge)
        ports = []
        for number in sorted(state.ports):
            port = state.ports[number]
            config = state.bridge.port(port.name)
            info = port.describe()
            info.update(ofport=number, tag=config.tag,
                        external_ids=dict(state.external_ids.get(port.name, {})),
                        statistics=port.stats.to_dict())
            ports.append(info)
        return ports

    def show(self) -> m.JSON:
        return [{"name": name, "fail_mode": self.board.bridges[name].fail_mode,
                 "other_config": learning_config.describe(self.board.bridges[name].bridge),
                 "ports": self._ports_of(name)} for name in sorted(self.board.bridges)]

    def _add_flows(self, r: m.AddFlows) -> m.JSON:
        return self.board.bridge(r.bridge).bridge.add_flows(r.flows)

    def _mod_flows(self, r: m.ModFlows) -> m.JSON:
        return self.board.bridge(r.bridge).bridge.mod_flows(r.flow, strict=r.strict)

    def _del_flows(self, r: m.DelFlows) -> m.JSON:
        return self.board.bridge(r.bridge).bridge.del_flows(r.match, strict=r.strict)

    def _dump_flows(self, r: m.DumpFlows) -> m.JSON:
        return list(self.board.bridge(r.bridge).bridge.dump_flows(r.match, stats=r.stats))

    def _dump_ports(self, r: m.DumpPorts) -> m.JSON:
        state = self.board.bridge(r.bridge)
        ports = [p for p in state.ports.values() if r.port is None or r.port in
                 (p.name, str(p.ofport))]
        if r.port is not None and not ports:
            raise DatapathError(f"bridge {r.bridge!r} has no port {r.port!r}")
        return [{"name": p.name, "ofport": p.ofport, **p.stats.to_dict(),
                 **({"mtu": p.max_inner - INNER_ETHERNET, "oversize": dict(p.oversize)}
                    if isinstance(p, TunnelPort) else {})}
                for p in sorted(ports, key=lambda p: p.ofport)]

    def _trace(self, r: m.TraceFlow) -> m.JSON:
        state = self.board.bridge(r.bridge)
        trace = state.bridge.trace(r.flow)
        notes = []
        for number in trace.outputs:
            port = state.ports.get(number)
            if isinstance(port, TunnelPort):
                # the tables cannot know this: what the tunnel does to the frame, and the
                # largest frame the underlay takes (the VXLAN MTU black hole made visible)
                key = "flow (tun_id)" if port.key is None else str(port.key)
                notes.append(
                    f"port {number} ({port.name}): {port.kind.value} to {port.remote_ip}, key "
                    f"{key}, +{port.overhead} bytes outside the frame; underlay MTU "
                    f"{port.underlay_mtu}: frames over {port.max_inner} bytes (an untagged "
                    f"VM's IP MTU {port.max_inner - INNER_ETHERNET}) are not sent whole: "
                    f"{OVERSIZE_WORDS}")
            elif isinstance(port, PatchPort):
                notes.append(f"port {number} ({port.name}): patch to {port.peer!r}; the "
                             "packet continues there with the metadata cleared")
        if self.board.kernel is not None:
            notes.append(self.board.kernel.describe(state.bridge,
                                                    state.bridge.trace_key(r.flow)))
        text = trace.to_text(explain=r.explain)
        if notes:
            text = text.rstrip("\n") + "\n\nDatapath:\n" + "".join(f"  {n}\n" for n in notes)
        result = trace.to_json()
        result["datapath"] = notes
        return {"trace": result, "text": text}

    def _dump_drops(self, r: m.DumpDrops) -> m.JSON:
        names = [r.bridge] if r.bridge is not None else sorted(self.board.bridges)
        bridges = {}
        for name in names:
            state = self.board.bridge(name)
            merged = dict(state.bridge.drops)
            for reason, count in state.drops.items():
                merged[reason] = merged.get(reason, 0) + count
            bridges[name] = merged
        tunnels = [p for p in self.board.ports.values() if isinstance(p, TunnelPort)
                   and (r.bridge is None or p.bridge == r.bridge)]
        # frames whose source a cap kept from being learned: still forwarded, so not drops,
        # but the sign of a MAC flood (docs/architecture.md "Learning is capped per VLAN")
        refused = {name: {"mac_limit": self.board.bridge(name).bridge.mac_table.limit_hits,
                          "learn_limit": self.board.bridge(name).bridge.learn_limit_hits}
                   for name in names}
        return {"daemon": dict(self.board.tunnels.drops), "bridges": bridges,
                "learning_refused": refused,
                "tunnel_tx_dropped": {p.name: p.stats.tx_dropped for p in tunnels},
                "oversize": {p.name: dict(p.oversize) for p in tunnels if p.oversize}}
