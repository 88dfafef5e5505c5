"""The Python mirrors of the BPF maps' keys and values against the compiled object's BTF.

Judge: bpftool reading the BTF clang wrote into replay.bpf.o, so a field added on one side
only, or padded differently, fails here instead of corrupting plans in the kernel.
"""

from __future__ import annotations

import ctypes
import re
import subprocess

import pytest

from support.tools import require_tool
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT
from tunnelnet.datapath.kernel_maps import (
    DatagramMeta,
    EncapPortEntry,
    EncapTunnelEntry,
    EncapTunnelKey,
    Inner,
    InnerKey,
    MeterConfig,
    PortEntry,
    PortKey,
    PortMeter,
    PortPlan,
    TunnelEntry,
    TunnelKey,
    TunnelPlan,
    UpcallMeta,
)

MIRRORS: dict[str, type[ctypes.Structure]] = {
    "inner_key": InnerKey, "port_key": PortKey, "port_entry": PortEntry,
    "tunnel_key": TunnelKey, "tunnel_entry": TunnelEntry, "upcall_meta": UpcallMeta,
    "encap_port_entry": EncapPortEntry, "encap_tunnel_key": EncapTunnelKey,
    "encap_tunnel_entry": EncapTunnelEntry, "datagram_meta": DatagramMeta,
    "meter_config": MeterConfig, "port_meter": PortMeter,
}


def _btf_structs() -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """struct name -> (size, [(member, byte offset)]) from bpftool's raw BTF dump."""
    if not REPLAY_OBJECT.exists():
        pytest.skip(f"{REPLAY_OBJECT.name} is not built (`make bpf`, which `make test` runs)")
    bpftool = require_tool("bpftool")
    raw = subprocess.run([bpftool, "btf", "dump", "file", str(REPLAY_OBJECT), "format", "raw"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    structs: dict[str, tuple[int, list[tuple[str, int]]]] = {}
    current: list[tuple[str, int]] | None = None
    for line in raw.splitlines():
        head = re.match(r"\[\d+\] STRUCT '(\w+)' size=(\d+)", line)
        if head:
            current = []
            structs[head.group(1)] = (int(head.group(2)), current)
            continue
        member = re.match(r"\s+'(\w+)' type_id=\d+ bits_offset=(\d+)", line)
        if member and current is not None:
            current.append((member.group(1), int(member.group(2)) // 8))
        elif not line.startswith((" ", "\t")):
            current = None
    return structs


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_python_mirror_has_the_c_structures_size_fields_and_offsets(name: str) -> None:
    size, members = _btf_structs()[name]
    mirror = MIRRORS[name]
    assert ctypes.sizeof(mirror) == size
    assert [(f[0], getattr(mirror, f[0]).offset) for f in mirror._fields_] == members


@pytest.mark.parametrize("bad", [
    dict(inner=Inner("02:00:00:00:00")), dict(inner=Inner("zz:00:00:00:00:01")),
    dict(vni=1 << 24), dict(vni=-1), dict(remote_ip="192.0.2.300"), dict(remote_ip="::1"),
])
def test_a_bad_plan_is_refused_by_naming_its_field(bad: dict[str, object]) -> None:
    fields: dict[str, object] = dict(in_ifindex=3, inner=Inner("02:00:00:00:00:01"), vni=42,
                                     remote_ip="192.0.2.2", tunnel_ifindex=4, max_frame_len=1464)
    fields.update(bad)
    plan = PortPlan(**fields)  # type: ignore[arg-type]
    shown = next(iter(bad.values()))
    named = shown.dst_mac if isinstance(shown, Inner) else shown
    with pytest.raises(DatapathError, match=re.escape(str(named))):
        plan.key()
        plan.entry()
    with pytest.raises(DatapathError):
        tplan = TunnelPlan(int(fields["vni"]), str(fields["remote_ip"]),  # type: ignore[call-overload]
                           fields["inner"], 5)
        tplan.key()


def test_addresses_go_in_host_byte_order_as_the_tunnel_key_helpers_take_them() -> None:
    entry = PortPlan(3, Inner("02:00:00:00:00:01"), 0xABCDEF, "192.0.2.2", 4, 1464).entry()
    assert entry.remote_ipv4 == 0xC0000202 and entry.vni == 0xABCDEF
    key = TunnelPlan(7, "10.1.2.3", Inner("02:aa:bb:cc:dd:ee"), 9).key()
    assert key.remote_ipv4 == 0x0A010203
    assert bytes(key.inner.dst_mac) == bytes.fromhex("02aabbccddee")


def test_the_inner_key_holds_the_frames_own_bytes_in_network_order() -> None:
    """struct inner_key is read from the frame with bpf_skb_load_bytes: its bytes must be
    the frame's (RFC 791 header offsets), whatever the host's byte order."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether

    udp = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") /
                IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=53))
    key = bytes(Inner.of_frame(udp).key())
    assert key[0:12] == udp[0:12]  # both MACs
    assert key[12:14] == b"\x08\x00" and key[14] == 17
    assert key[16:24] == udp[26:34]  # source and destination address
    assert key[24:28] == udp[34:38]  # the UDP ports
    icmp = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0))
    assert bytes(Inner.of_frame(icmp).key())[24:28] == b"\x00\x08\x00\x00"  # type, code
