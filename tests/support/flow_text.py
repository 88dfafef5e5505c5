# ruff: noqa: E501  (the vocabulary reads best one entry a line)
"""Random add-flow lines from the ovs-ofctl vocabulary tunnelnet supports (hypothesis), for
the properties that every flow we accept must keep (tests/unit/switch/test_flow_text_roundtrip.py,
tests/unit/datapath/test_datapath_parsed_flows.py)."""

from __future__ import annotations

from hypothesis import strategies as st

MAC = st.integers(0, (1 << 48) - 1).map(
    lambda v: ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
)
IP = st.integers(0, (1 << 32) - 1).map(lambda v: ".".join(str(b) for b in v.to_bytes(4, "big")))

L2 = {
    "in_port": st.integers(1, 0xFEFF).map(str),
    "dl_src": MAC,
    "dl_dst": st.one_of(MAC, st.tuples(MAC, MAC).map("/".join)),
    "dl_vlan": st.integers(0, 4095).map(str),
    "dl_vlan_pcp": st.integers(0, 7).map(str),
    "tun_id": st.one_of(
        st.integers(0, (1 << 64) - 1).map(hex),
        st.tuples(st.integers(0, 0xFFFF), st.integers(1, 0xFFFF)).map(
            lambda t: f"{t[0]:#x}/{t[1]:#x}"
        ),
    ),
    "metadata": st.integers(0, (1 << 64) - 1).map(hex),
    "reg3": st.integers(0, (1 << 32) - 1).map(str),
}
L3 = {
    "ip": {
        "nw_src": st.tuples(IP, st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"),
        "nw_dst": IP,
        "nw_tos": st.integers(0, 63).map(lambda v: str(v * 4)),
    },
    "tcp": {
        "nw_src": IP,
        "tp_dst": st.integers(0, 0xFFFF).map(str),
        "tp_src": st.tuples(st.integers(0, 0xFFFF), st.integers(1, 0xFFFF)).map(
            lambda t: f"{t[0]:#x}/{t[1]:#x}"
        ),
    },
    "udp": {"tp_src": st.integers(0, 0xFFFF).map(str)},
    "icmp": {"icmp_type": st.integers(0, 255).map(str), "icmp_code": st.integers(0, 255).map(str)},
    "arp": {
        "arp_op": st.integers(0, 0xFF).map(str),
        "arp_spa": IP,
        "arp_tpa": IP,
        "arp_sha": MAC,
        "arp_tha": MAC,
    },
    "ipv6": {"ipv6_src": st.sampled_from(["2001:db8::1", "fe80::/10", "::"])},
    "": {},
}
ACTIONS = st.lists(
    st.one_of(
        st.integers(1, 100).map(lambda p: f"output:{p}"),
        st.sampled_from(["NORMAL", "FLOOD", "ALL", "IN_PORT", "LOCAL", "strip_vlan", "push_vlan:0x8100"]),
        st.integers(0, 254).map(lambda t: f"resubmit(,{t})"),
        st.integers(0, 4095).map(lambda v: f"mod_vlan_vid:{v}"),
        st.integers(0, (1 << 64) - 1).map(lambda v: f"set_tunnel64:{v:#x}"),
        MAC.map(lambda m: f"mod_dl_dst:{m}"),
        st.integers(0, 0xFFFF).map(lambda v: f"load:{v:#x}->NXM_NX_REG2[8..23]"),
        st.just("move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]"),
        st.just("learn(table=20,priority=1,hard_timeout=300,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:OXM_OF_IN_PORT[])"),
    ),
    max_size=5,
)  # fmt: skip


@st.composite
def flows(draw: st.DrawFn) -> str:
    parts = [f"table={draw(st.integers(0, 253))}", f"priority={draw(st.integers(0, 65535))}"]
    if draw(st.booleans()):
        parts.append(f"cookie={draw(st.integers(0, (1 << 64) - 1)):#x}")
    for name in draw(st.lists(st.sampled_from(sorted(L2)), unique=True, max_size=4)):
        parts.append(f"{name}={draw(L2[name])}")
    proto = draw(st.sampled_from(sorted(L3)))
    if proto:
        parts.append(proto)
        fields = L3[proto]
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=3)):
            parts.append(f"{name}={draw(fields[name])}")
    order = draw(st.permutations(parts))
    return ",".join(order) + " actions=" + (",".join(draw(ACTIONS)) or "drop")
