"""The journey as text: ofproto/trace's shape, one block per bridge, across hosts."""

from __future__ import annotations

import textwrap

from tunnelnet.packet import tunnel_kinds
from tunnelnet.trace.model import Journey, Visit


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=indent + "# ",
                         subsequent_indent=indent + "# ", break_on_hyphens=False)


def _visit(v: Visit, j: Journey, explain: bool, out: list[str]) -> None:
    title = f'{v.host} bridge("{v.bridge}") in_port={v.in_port}'
    if v.hypothetical:
        title = "WHAT IF (not on the path): " + title
    out += ["", title, "-" * len(title)]
    if explain and v.explanation:
        out += _wrap(v.explanation, "")
    out.append(f"Flow: {v.flow}")
    for s in v.steps:
        pad = ""
        where = f"{s.match}, " if s.match else ""
        prio = f"priority {s.priority}" if s.priority >= 0 else "no match"
        out.append(f"{pad}{s.table:2d}. {where}{prio}, cookie {s.cookie}")
        if explain and s.explanation:
            out += _wrap(s.explanation, pad + "    ")
        out.append(f"{pad}    {s.actions or 'drop'}")
    for e in v.exits:
        what = {"vm": f"VM {e.vm}'s vNIC", "patch": "patch port", "tunnel": "tunnel",
                "physical": "uplink to the physical switch", "drop": "nowhere",
                "port": "port"}[e.kind]
        vlan = f" (802.1Q VLAN {e.vlan})" if e.vlan is not None else " (untagged)"
        nxt = f" -> visit {e.next_visit}" if e.next_visit is not None else ""
        out.append(f"  => out of {e.port} [{what}]{vlan}{nxt}")
        if e.kind == "physical" and e.note:
            out.append(f"     {e.note}")
        if e.encap is not None:
            enc = j.encaps[e.encap]
            udp_kind = tunnel_kinds.kind(enc.type).transport is tunnel_kinds.Transport.UDP
            # a 24-bit VNI reads best in decimal, GRE's 32-bit key in hex (as OVS prints it)
            key = f"vni={enc.key}" if udp_kind else f"key={enc.key:#x}"
            udp = (f" udp {enc.udp_src}->{enc.udp_dst}" if enc.udp_src is not None
                   else f" udp (its own choice)->{enc.udp_dst}" if udp_kind else "")
            out.append(f"     encap {enc.type}: {enc.outer_src} -> {enc.outer_dst} {key}{udp}"
                       f" inner {enc.inner_length} B, outer IP {enc.outer_ip_length} B "
                       f"(underlay MTU {enc.underlay_mtu}: {'fits' if enc.fits else 'TOO BIG'}"
                       f"; VM IP MTU {enc.vm_mtu})")
            if not enc.fits:
                out.append(f"     too big: {enc.oversize}")
            if enc.liveness:
                out += _wrap(enc.liveness[0].upper() + enc.liveness[1:], "     ")
            if explain:
                out += _wrap(enc.explanation, "     ")
    if v.learning:
        out += _wrap(v.learning, "  ")
    if v.drop or not v.exits:
        out.append("  => drop")


def _frame_line(frame: dict[str, object]) -> str:
    ok = "delivered" if frame["delivered"] else "NOT delivered"
    hosts = frame["hosts"]
    assert isinstance(hosts, list)
    line = f"  {frame['packet']}: {ok} to {frame['to']} (bridges visited on {', '.join(hosts)})"
    floods = frame["floods"]
    assert isinstance(floods, list)
    return "\n".join([line] + ["\n".join(_wrap(str(f), "    ")) for f in floods])


def to_text(j: Journey, explain: bool = False) -> str:
    out = [f"Journey of {j.packet['summary']} ({j.packet['length']} bytes)",
           f"  from {j.src['name']} ({j.src['tenant']}/{j.src['network']}, {j.src['hypervisor']},"
           f" {j.src['mac']})",
           f"  to   {j.dst['name']} ({j.dst['tenant']}/{j.dst['network']}, {j.dst['hypervisor']},"
           f" {j.dst['mac']})"]
    before = [f for f in j.exchange[:next((i for i, f in enumerate(j.exchange) if f["main"]),
                                          0)]]
    if before:
        out += ["", f"First, as {j.src['name']}'s stack does before this packet (every switch "
                "on the way learns from these frames):"]
        out += [_frame_line(f) for f in before]
    for v in j.visits:
        _visit(v, j, explain, out)
    out += ["", "Outcome: " + ("DELIVERED" if j.outcome.delivered else "NOT DELIVERED")]
    for e in j.outcome.ends:
        tag = " (what if)" if e.hypothetical else ""
        out.append(f"  {e.what}{tag} at {e.host} {e.bridge}: {e.reason}")
    out += textwrap.wrap("In short: " + j.outcome.summary, width=100, subsequent_indent="  ")
    after = [f for f in j.exchange[next((i for i, f in enumerate(j.exchange) if f["main"]),
                                        len(j.exchange)) + 1:]]
    if after:
        out += ["", "Then:"] + [_frame_line(f) for f in after]
    if j.live is not None:
        out += ["", "Live check: " + ("AGREES with the wire" if j.live.get("ok")
                                      else "DISAGREES with the wire")]
        for line in j.live.get("lines", []):
            out.append(f"  {line}")
    return "\n".join(out) + "\n"
