"""``SwitchView`` of a lab hypervisor that runs Open vSwitch (``switch = "ovs"``).

Open vSwitch answers with its own tools, read as text: ``ovs-appctl dpif/show`` for ports
(OpenFlow and datapath numbers), ``ovs-vsctl`` for VLAN tags, ``ovs-ofctl dump-flows``, and
``ovs-appctl ofproto/trace`` for the lookup. Its trace follows patch ports into the peer
bridge by itself; the journey asks one bridge at a time, so only the asked bridge's section is
taken, and where the frame left it is read from explicit ``output:N`` actions, a following
section of the patch peer (the frame crossed the patch port) and the datapath actions
(datapath port numbers, mapped back through dpif/show).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import ovs_host
from tunnelnet.switch.action_parser import split_top
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.view import PortInfo

_BRIDGE = re.compile(r'^bridge\("([^"]+)"\)$')
_TABLE = re.compile(r"^\s*(\d+)\. (?:(\S+), )?priority (\d+)(?:, cookie (0x[0-9a-f]+))?$")
_DPIF_PORT = re.compile(r"^\s+(\S+) (\d+)/(\S+): \((\w+)(?:: (.*))?\)$")
_OUTPUT = re.compile(r"^output:(\d+)$")
# the datapath action check_pkt_larger becomes: larger than SIZE -> gt(...), else le(...)
_CHECK_PKT_LEN = re.compile(r"check_pkt_len\(size=(\d+),gt\((.*?)\),le\(")
# the actions of br-tun's flows that change what the trace reads from the final flow
_STRIP = ("strip_vlan", "pop_vlan", "load:0->NXM_OF_VLAN_TCI[]")
_TUN_ID = re.compile(r"^(?:set_tunnel64?:(\w+)|(?:load|set_field):(\w+)->"
                     r"(?:NXM_NX_TUN_ID\[\]|tun_id))$")
_MOD_VLAN = re.compile(r"^mod_vlan_vid:(\d+)$")
_OFPP_LOCAL: Final = 65534


_KEEP_TUNNEL: Final = ("tun_id", "tun_src", "tun_dst")
_EXTRA_PREFIXES: Final = ("tun_", "gtpu_", "ct_", "recirc_id", "packet_type", "vlan_tci1",
                          "nw_frag", "dp_hash", "skb_", "pkt_mark")


def ours(flow: str) -> str:
    """Open vSwitch's flow text without the fields it prints that our flows do not carry
    (inner-VLAN, GTP-U, tunnel extras, fragment state...), so it can be traced onwards."""
    kept = []
    for token in flow.split(","):
        name = token.split("=", 1)[0].strip()
        if name.startswith(_EXTRA_PREFIXES) and name not in _KEEP_TUNNEL:
            continue
        kept.append(token)
    return ",".join(kept)


def _replayed(flow: str, actions: list[str]) -> str:
    """``flow`` after br-tun's actions that change what the journey reads (the VLAN, the
    tunnel key). Needed where a check_pkt_larger was on the way: Open vSwitch translates
    both of its branches and then puts the flow back as it was at the check, so its "Final
    flow" says "unchanged" although the frame left without its VLAN and with a key."""
    fields = [t for t in flow.split(",") if t]
    for action in actions:
        if action in _STRIP:
            fields = [t for t in fields if not t.startswith(("dl_vlan=", "dl_vlan_pcp=",
                                                             "vlan_tci="))]
        elif (m := _MOD_VLAN.match(action)) is not None:
            fields = [t for t in fields if not t.startswith("dl_vlan=")]
            fields.append(f"dl_vlan={m.group(1)}")
        elif (m := _TUN_ID.match(action)) is not None:
            fields = [t for t in fields if not t.startswith("tun_id=")]
            fields.append(f"tun_id={int(m.group(1) or m.group(2), 0):#x}")
    return ",".join(fields)


def parse_trace(text: str, bridge: str) -> dict[str, Any]:
    """The asked bridge's part of an ofproto/trace, as our Trace.to_json() shapes it (steps
    with table/priority/match/actions/cookie; outputs filled in by the caller)."""
    flow = final = ""
    sections: list[tuple[str, list[str]]] = []
    datapath = ""
    for line in text.splitlines():
        if line.startswith("Flow: ") and not flow:
            flow = line[len("Flow: "):]
        elif line.startswith("Final flow: "):
            final = line[len("Final flow: "):]
        elif line.startswith("Datapath actions: "):
            datapath = line[len("Datapath actions: "):]
        elif (m := _BRIDGE.match(line)) is not None:
            sections.append((m.group(1), []))
        elif sections and line.strip() and not set(line.strip()) <= {"-"}:
            sections[-1][1].append(line)
    if not sections or sections[0][0] != bridge:
        raise TraceError(f"ofproto/trace of {bridge} did not start in {bridge}")
    steps: list[dict[str, Any]] = []
    for line in sections[0][1]:
        m = _TABLE.match(line)
        if m is not None:
            # a step indented past the table column is nested: with a check_pkt_larger on
            # the way, the branch taken by larger frames only (see below)
            indent = len(line) - len(line.lstrip())
            steps.append({"table": int(m.group(1)), "priority": int(m.group(3)),
                          "match": m.group(2) or "", "actions": "", "depth": 0,
                          "cookie": m.group(4) or "0x0", "note": "", "_lines": [],
                          "_nested": indent > 2})
        elif steps:
            # an action line back at the top level's column, after a nested step, is the
            # rest of the last top-level step (its actions after the resubmit)
            owner = steps[-1]
            if owner["_nested"] and len(line) - len(line.lstrip()) <= 4:
                owner = next((s for s in reversed(steps) if not s["_nested"]), owner)
            owner["_lines"].append(line.strip())
    for s in steps:
        lines = s.pop("_lines")
        nested = s.pop("_nested")
        s["depth"] = 1 if nested and _CHECK_PKT_LEN.search(datapath) else 0
        s["actions"] = ",".join(x for x in lines if not x.startswith((">>", "->")))
    check = _CHECK_PKT_LEN.search(datapath)
    mtu_check = int(check.group(1)) if check is not None and "controller(" in check.group(2) \
        else None
    # the branch taken by larger frames only, apart: the steps are those of a frame that
    # fits (the journey puts the other branch in their place for one that does not)
    larger = [s for s in steps if s["depth"] == 1]
    for s in larger:
        s["note"] = f"only a frame larger than {mtu_check} bytes takes this"
    steps = [s for s in steps if s["depth"] == 0]
    if check is not None:
        for s in steps:  # both branches' rest, one after the other: say it once
            items = split_top(s["actions"]) if s["actions"] else []
            s["actions"] = ",".join(a for i, a in enumerate(items) if i == 0 or a != items[i - 1])
    if final == "unchanged" or not final:
        final = flow
        if check is not None:
            final = _replayed(flow, [a for s in steps for a in split_top(s["actions"])])
    flow, final = ours(flow), ours(final)
    return {"flow": flow, "steps": steps, "final_flow": final, "datapath": datapath,
            "mtu_check": mtu_check, "larger_steps": larger,
            "next_bridge": sections[1][0] if len(sections) > 1 else None,
            "drop": datapath.strip() == "drop"}


class OvsSwitch:
    # Open vSwitch's userspace tunnel push picks the VXLAN source port by its own hash of the
    # flow, in 32768-61000 (netdev-native-tnl.c), not by tunnelnet's RFC 7348 hash
    vxlan_source_port_is_ours = False
    # Open vSwitch sends no ICMP for a packet too big for a tunnel by itself: the outer
    # packet, with DF, is refused and lost. Where br-tun has the MTU doctor's flows
    # (check_pkt_larger, then controller), the trace's "mtu_check" says so, and the agent
    # answers (agent/mtu_doctor.py)
    answers_oversize = False
    product = "Open vSwitch"
    VXLAN_SOURCE_RANGE: Final = (32768, 61000)

    def __init__(self, hypervisor: str, rundir: Path, netns: str) -> None:
        self.hypervisor = hypervisor
        self.rundir = rundir
        self.netns = netns

    def _run(self, *argv: str) -> str:
        try:
            return ovs_host._run(list(argv), self.rundir, self.netns)
        except TunnelnetError as exc:
            raise TraceError(f"{self.hypervisor} (Open vSwitch): {exc}") from exc

    def _appctl(self, *args: str) -> str:
        return self._run("ovs-appctl", "-t", str(self.rundir / "ovs-vswitchd.ctl"), *args)

    def _dpif(self) -> dict[str, list[tuple[str, int, str, str, dict[str, str]]]]:
        """bridge -> [(port, ofport, datapath port, type, options)] from dpif/show."""
        out: dict[str, list[tuple[str, int, str, str, dict[str, str]]]] = {}
        current = ""
        for line in self._appctl("dpif/show").splitlines():
            if line.startswith("  ") and not line.startswith("    ") and line.endswith(":"):
                current = line.strip()[:-1]
                out[current] = []
                continue
            m = _DPIF_PORT.match(line)
            if m is not None and current:
                opts = dict(kv.split("=", 1) for kv in (m.group(5) or "").split(", ") if "=" in kv)
                out[current].append((m.group(1), int(m.group(2)), m.group(3), m.group(4), opts))
        return out

    def _tags(self) -> dict[str, int | None]:
        raw = json.loads(self._run("ovs-vsctl", f"--db=unix:{self.rundir}/db.sock",
                                   "-f", "json", "--", "--columns=name,tag", "list", "Port"))
        return {row[0]: row[1] if isinstance(row[1], int) else None for row in raw["data"]}

    def ports(self, bridge: str) -> list[PortInfo]:
        tags = self._tags()
        out = []
        for name, ofport, _dp, kind, opts in self._dpif().get(bridge, []):
            if ofport == _OFPP_LOCAL:
                kind = "internal"
            elif kind in ("tap", "system"):
                kind = "system"
            out.append(PortInfo(name=name, ofport=ofport, type=kind, tag=tags.get(name),
                                options=opts))
        return out

    def trace(self, bridge: str, flow: str) -> dict[str, Any]:
        parsed = parse_trace(self._appctl("ofproto/trace", bridge, flow), bridge)
        dpif = self._dpif()
        mine = dpif.get(bridge, [])
        outputs: list[int] = []
        in_port = next((p[1] for p in mine if f"in_port={p[0]}," in f"{flow}," or
                        f"in_port={p[1]}," in f"{flow},"), None)
        for step in parsed["steps"]:
            for action in step["actions"].split(","):
                m = _OUTPUT.match(action)
                if m is not None:
                    outputs.append(int(m.group(1)))
                elif action == "IN_PORT" and in_port is not None:
                    outputs.append(in_port)
        if any("NORMAL" in s["actions"] for s in parsed["steps"]):
            # NORMAL names no port: the peer's section says it crossed the patch port, the
            # datapath actions say which of this bridge's own ports it left by
            if parsed["next_bridge"] is not None:
                outputs += [p[1] for p in mine if p[3] == "patch" and any(
                    q[0] == p[4].get("peer") for q in dpif.get(parsed["next_bridge"], []))]
            by_dp = {p[2]: p[1] for p in mine}
            for token in re.split(r",(?![^(]*\))", parsed["datapath"]):
                if token.strip() in by_dp:
                    outputs.append(by_dp[token.strip()])
        seen: list[int] = []
        for o in outputs:
            if o not in seen:
                seen.append(o)
        return {"flow": parsed["flow"], "steps": parsed["steps"],
                "final_flow": parsed["final_flow"], "outputs": seen,
                "drop": not seen, "drop_reason": None, "mtu_check": parsed["mtu_check"],
                "larger_steps": parsed["larger_steps"]}

    def dump_flows(self, bridge: str) -> list[str]:
        return [line.strip() for line in self._run("ovs-ofctl", "dump-flows", bridge)
                .splitlines() if "actions=" in line]
