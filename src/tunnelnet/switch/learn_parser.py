"""learn(...) text -> Learn, read the way Open vSwitch's learn_parse reads it (lib/learn.c).

Besides NXM/OXM references (``NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]``) it takes what ovs-ofctl
itself prints, so that a learn() copied from ``ovs-ofctl dump-flows`` loads: meta-flow names
(``eth_type=0x800``, ``dl_type=0x0800``, bare ``eth_src``) and whole-field immediates in the
field's own syntax (``eth_dst=fa:16:3e:00:00:01``, ``ip_dst=10.0.0.1``, ``in_port=3``).

It refuses what OVS refuses (learn_check), since such a learn() would teach flows that
mean nothing: a field read from the packet whose prerequisites the flow's match lacks, and a
field matched or loaded in the learned flow whose prerequisites the learned match does not
establish by an immediate earlier in the list (``eth_type=0x800`` before ``ip_dst``).
"""

from __future__ import annotations

import ipaddress
from typing import Final

from tunnelnet.packet.fields import mac_to_int
from tunnelnet.switch.actions import check_prereqs
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.learn import DEFAULT_PRIORITY, Learn, LearnLoad, LearnMatch, LearnOutput
from tunnelnet.switch.learn import LearnSpec as Spec
from tunnelnet.switch.match import Match
from tunnelnet.switch.match_parser import parse_int, prereq_problem_for_match
from tunnelnet.switch.nxm import SubField, parse_field_ref
from tunnelnet.switch.ports import PortResolver, no_names, parse_port

_BITS: Final[dict[str, int]] = {"table": 8, "priority": 16, "cookie": 64}
_UNSUPPORTED: Final = frozenset({"delete_learned", "send_flow_rem", "limit", "result_dst"})
# The fields that are prerequisites of others; an immediate for one of them, for the whole
# field, is what establishes a prerequisite in the learned match (a partial one does not in
# OVS either: NXM_OF_ETH_TYPE[0..7]=0,NXM_OF_ETH_TYPE[8..15]=8 before ip_dst is refused).
_PREREQ_FIELDS: Final = frozenset({"dl_type", "nw_proto"})


def parse_learn(
    item: str, arg: str, match: Match | None = None, resolve: PortResolver = no_names
) -> Learn:
    """``match`` is the match of the flow the learn() is in (None: not checked)."""
    # action_parser imports this module; its helpers are imported here at call time
    from tunnelnet.switch.action_parser import MAX_FLOW_TABLE, split_top

    params: dict[str, int] = {
        "table": 1,
        "priority": DEFAULT_PRIORITY,
        "idle_timeout": 0,
        "hard_timeout": 0,
        "fin_idle_timeout": 0,
        "fin_hard_timeout": 0,
        "cookie": 0,
    }
    specs: list[Spec] = []
    learned: dict[str, tuple[int, int]] = {}  # what the learned match has established so far
    for raw in split_top(arg):
        part = raw.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if eq and name in params:
            params[name] = parse_int(value, _BITS.get(name, 16), f"learn {name}")
            continue
        if name in _UNSUPPORTED:
            raise FlowSyntaxError(f"learn {part!r}: {name} is not supported by tunnelnet")
        spec = _parse_spec(part, resolve)
        _check(part, spec, match, learned)
        if isinstance(spec, LearnMatch) and spec.src is None and _sets_prereq(spec.dst):
            learned[spec.dst.field] = (spec.imm or 0, (1 << spec.dst.n_bits) - 1)
        specs.append(spec)
    if params["table"] > MAX_FLOW_TABLE:
        raise FlowSyntaxError(f"{item!r}: learn table out of range 0..{MAX_FLOW_TABLE}")
    return Learn(
        table=params["table"],
        priority=params["priority"],
        idle_timeout=params["idle_timeout"],
        hard_timeout=params["hard_timeout"],
        fin_idle_timeout=params["fin_idle_timeout"],
        fin_hard_timeout=params["fin_hard_timeout"],
        cookie=params["cookie"],
        specs=tuple(specs),
    )


def _sets_prereq(dst: SubField) -> bool:
    return dst.covers_field and dst.field in _PREREQ_FIELDS


def _parse_spec(part: str, resolve: PortResolver) -> Spec:
    if part.startswith("load:"):
        src_text, arrow, dst_text = part[5:].partition("->")
        if not arrow:
            raise FlowSyntaxError(f"learn {part!r}: expected load:SRC->DST[range]")
        dst = _field(part, dst_text)
        if _looks_like_field(src_text):
            src = _field(part, src_text)
            _same_width(part, src, dst)
            return LearnLoad(dst, src, None)
        return LearnLoad(dst, None, _partial_imm(part, src_text, dst))
    if part.startswith("output:"):
        return LearnOutput(_field(part, part[7:]))
    name, eq, value = part.partition("=")
    if not _looks_like_field(name):
        raise FlowSyntaxError(
            f"learn {part!r}: unknown learn argument (a field is written as an NXM name or "
            "as ovs-ofctl names it: NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[], eth_type=0x800)"
        )
    dst = _field(part, name)
    if not eq:
        return LearnMatch(dst, dst, None)
    if _looks_like_field(value):
        src = _field(part, value)
        _same_width(part, src, dst)
        return LearnMatch(dst, src, None)
    if dst.covers_field:
        return LearnMatch(dst, None, _whole_imm(part, value, dst, resolve))
    return LearnMatch(dst, None, _partial_imm(part, value, dst))


def _looks_like_field(text: str) -> bool:
    """A value is read as a field when it starts like a name (OVS tries a field first too):
    immediates start with a digit (0x5, 10.0.0.1, fa:16:...) or are a port name of in_port."""
    t = text.strip()
    try:
        parse_field_ref(t)
    except FlowSyntaxError:
        return False
    return True


def _field(part: str, text: str) -> SubField:
    try:
        return parse_field_ref(text)
    except FlowSyntaxError as err:
        raise FlowSyntaxError(f"learn {part!r}: {err}") from None


def _whole_imm(part: str, text: str, dst: SubField, resolve: PortResolver) -> int:
    """An immediate for a whole field is written in that field's syntax, as OVS's
    mf_parse_value reads it: a MAC, a dotted IPv4 address, a port number or name."""
    t = text.strip()
    fmt = dst.nxm.fmt
    if fmt == "mac":
        try:
            return mac_to_int(t)
        except ValueError:
            raise FlowSyntaxError(
                f"learn {part!r}: {t!r} is not an Ethernet address (like fa:16:3e:00:00:01)"
            ) from None
    if fmt == "ipv4":
        try:
            return int(ipaddress.IPv4Address(t))
        except ValueError:
            raise FlowSyntaxError(f"learn {part!r}: {t!r} is not an IPv4 address") from None
    if fmt == "port":
        if t.lower().startswith("0x"):
            raise FlowSyntaxError(f"learn {part!r}: {t!r}: a port is a decimal number or a name")
        return parse_port(t, resolve, what=f"learn {part!r}: port")
    return _partial_imm(part, t, dst)


def _partial_imm(part: str, text: str, dst: SubField) -> int:
    value = parse_int(text, 128, f"learn {part!r}")
    if value >= 1 << dst.n_bits:
        raise FlowSyntaxError(f"learn {part!r}: value does not fit into {dst.n_bits} bits")
    return value


def _same_width(part: str, src: SubField, dst: SubField) -> None:
    if src.n_bits != dst.n_bits:
        raise FlowSyntaxError(
            f"learn {part!r}: source is {src.n_bits} bits wide but destination is {dst.n_bits}"
        )


def _check(part: str, spec: Spec, match: Match | None, learned: dict[str, tuple[int, int]]) -> None:
    """OVS's learn_check: sources against the flow's match, destinations against the
    learned match as far as it is built (Open vSwitch: OFPBAC_MATCH_INCONSISTENT)."""
    if match is not None and spec.src is not None:
        problem = check_prereqs(spec.src, match, f"learn {part!r}: source")
        if problem:
            raise FlowSyntaxError(problem)
    if isinstance(spec, LearnOutput) or spec.dst.nxm.prereq is None:
        return
    need = prereq_problem_for_match(spec.dst.nxm.prereq, Match.of(learned))
    if need is not None:
        raise FlowSyntaxError(
            f"learn {part!r}: {spec.dst.nxm.name} needs {need} in the learned flow's match, "
            "set by an immediate before it (eth_type=0x800, eth_type=0x806, nw_proto=6...)"
        )
