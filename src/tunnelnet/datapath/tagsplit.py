"""Classic BPF filters that split a packet socket's frames by whether the kernel holds a VLAN
tag for them as metadata.

The kernel takes an 802.1Q or 802.1ad tag out of every arriving frame before a packet socket
sees it; only PACKET_AUXDATA, read with recvmsg or recvmmsg, gives it back. A system port
therefore reads untagged frames on one socket and tagged ones on another: the untagged socket,
which carries nearly all traffic, can then be read with a plain recv() when it is quiet
(see pace.py), and no tag is ever lost. Frames of one flow are all tagged or all untagged, so
each flow keeps its order.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Final

SO_ATTACH_FILTER: Final = 26
_SKF_AD_VLAN_TAG_PRESENT: Final = 0xFFFFF000 + 48  # SKF_AD_OFF + 48, as an unsigned k
_LD_B_ABS: Final = 0x30  # BPF_LD | BPF_B | BPF_ABS
_JEQ_K: Final = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_RET_K: Final = 0x06  # BPF_RET | BPF_K
_WHOLE: Final = 0xFFFFFFFF  # bytes to keep: all of them
_INSN: Final = struct.Struct("HBBI")


def attach(sock: socket.socket, *, tagged: bool) -> None:
    """Let ``sock`` queue only the frames with (``tagged``) or without a tag in metadata.
    Attach before bind(), so that no frame is queued unfiltered. Raises OSError when the
    kernel refuses the program."""
    keep_tagged, keep_untagged = (_WHOLE, 0) if tagged else (0, _WHOLE)
    program = b"".join((
        _INSN.pack(_LD_B_ABS, 0, 0, _SKF_AD_VLAN_TAG_PRESENT),
        _INSN.pack(_JEQ_K, 1, 0, 0),  # no tag: jump over the next instruction
        _INSN.pack(_RET_K, 0, 0, keep_tagged),
        _INSN.pack(_RET_K, 0, 0, keep_untagged),
    ))
    code = ctypes.create_string_buffer(program, len(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", 4, ctypes.addressof(code)))
