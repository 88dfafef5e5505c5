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
    PortEntry,
    PortKey,
    PortPlan,
    TunnelEntry,
    TunnelKey,
    TunnelPlan,
    UpcallMeta,
)

MIRRORS: dict[str, type[ctypes.Structure]] = {
    "port_key": PortKey, "port_entry": PortEntry,
    "tunnel_key": TunnelKey, "tunnel_entry": TunnelEntry, "upcall_meta": UpcallMeta,
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
    dict(dst_mac="02:00:00:00:00"), dict(dst_mac="zz:00:00:00:00:01"),
    dict(vni=1 << 24), dict(vni=-1), dict(remote_ip="192.0.2.300"), dict(remote_ip="::1"),
])
def test_a_bad_plan_is_refused_by_naming_its_field(bad: dict[str, object]) -> None:
    fields: dict[str, object] = dict(in_ifindex=3, dst_mac="02:00:00:00:00:01", vni=42,
                                     remote_ip="192.0.2.2", tunnel_ifindex=4, max_frame_len=1464)
    fields.update(bad)
    plan = PortPlan(**fields)  # type: ignore[arg-type]
    with pytest.raises(DatapathError, match=re.escape(str(next(iter(bad.values()))))):
        plan.key()
        plan.entry()
    with pytest.raises(DatapathError):
        tplan = TunnelPlan(int(fields["vni"]), str(fields["remote_ip"]),  # type: ignore[call-overload]
                           str(fields["dst_mac"]), 5)
        tplan.key()


def test_addresses_go_in_host_byte_order_as_the_tunnel_key_helpers_take_them() -> None:
    entry = PortPlan(3, "02:00:00:00:00:01", 0xABCDEF, "192.0.2.2", 4, 1464).entry()
    assert entry.remote_ipv4 == 0xC0000202 and entry.vni == 0xABCDEF
    key = TunnelPlan(7, "10.1.2.3", "02:aa:bb:cc:dd:ee", 9).key()
    assert key.remote_ipv4 == 0x0A010203
    assert bytes(key.dst_mac) == bytes.fromhex("02aabbccddee")
