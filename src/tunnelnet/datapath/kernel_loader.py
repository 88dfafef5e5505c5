"""Loading BPF objects and attaching them, through libbpf (libbpf.so.1) with ctypes.

Why libbpf and not our own binding to bpf(2): a compiled object is an ELF file whose maps
must be created and whose instructions must be relocated to them (and, with BTF, checked
against the running kernel) before BPF_PROG_LOAD; done by hand that is an ELF reader and a
relocator, hundreds of lines to keep right as clang changes. libbpf does exactly that, is
maintained with the kernel, and is one 385 kB Debian package (libbpf1). What we call per
plan is only ``bpf_map_update_elem``/``lookup``/``delete``, which libbpf passes straight to
the syscall. Measured here (loaded 2-core machine, one map lookup through ctypes): libbpf
9.3 us, the same bpf(2) call through libc's syscall() 5.4-6.9 us. A few microseconds per plan
change, next to the table walk that makes a plan, do not pay for our own ELF loader;
bench/test_kernel_maps.py times a plan's install, read and removal through this module.
No compiler runs here: the object is built by ``make bpf``.

Everything is done in the calling thread's network namespace (tc attachment is netlink).
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final

from tunnelnet.datapath.errors import DatapathError

BPF_DIR: Final = Path(__file__).with_name("bpf")
LIBBPF_SONAME: Final = "libbpf.so.1"


class KernelFastPathUnavailable(DatapathError):
    """The kernel fast path cannot run here: the reason is the message, the Python path goes on.

    ``errno`` is the kernel's answer when there was one (EPERM: no CAP_BPF/CAP_NET_ADMIN)."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


class TcDirection(IntEnum):
    """enum bpf_tc_attach_point (libbpf.h)."""

    INGRESS = 1
    EGRESS = 2


class _TcHook(ctypes.Structure):
    # struct bpf_tc_hook { size_t sz; int ifindex; enum attach_point; __u32 parent; size_t :0 }
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int),
                ("attach_point", ctypes.c_int), ("parent", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    # struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags, prog_id, handle, priority; }
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32),
                ("priority", ctypes.c_uint32)]


_LIBBPF_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _say_nothing(level: int, fmt: bytes | None, args: int | None) -> int:
    # libbpf prints its own diagnostics on stderr; we raise ours with the errno instead
    return 0


_quiet = _LIBBPF_PRINT_FN(_say_nothing)  # kept referenced: libbpf holds the pointer


class LibBpf:
    """The few libbpf functions tunnelnet uses, typed once."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        signatures: dict[str, tuple[object, list[object]]] = {
            "bpf_object__open_file": (vp, [cp, vp]),
            "bpf_object__load": (ci, [vp]),
            "bpf_object__close": (None, [vp]),
            "bpf_object__find_program_by_name": (vp, [vp, cp]),
            "bpf_object__find_map_by_name": (vp, [vp, cp]),
            "bpf_program__fd": (ci, [vp]),
            "bpf_map__fd": (ci, [vp]),
            "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
            "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
            "bpf_map_delete_elem": (ci, [ci, vp]),
            "bpf_map_get_next_key": (ci, [ci, vp, vp]),
            "libbpf_num_possible_cpus": (ci, []),
            "bpf_tc_hook_create": (ci, [vp]),
            "bpf_tc_hook_destroy": (ci, [vp]),
            "bpf_tc_attach": (ci, [vp, vp]),
            "bpf_tc_detach": (ci, [vp, vp]),
            "libbpf_set_print": (vp, [_LIBBPF_PRINT_FN]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        lib.libbpf_set_print(_quiet)

    @classmethod
    def open(cls) -> LibBpf:
        try:
            return cls(ctypes.CDLL(LIBBPF_SONAME, use_errno=True))
        except OSError as exc:
            raise KernelFastPathUnavailable(
                f"{LIBBPF_SONAME} cannot be opened ({exc}); install Debian's libbpf1") from exc


def _check(ret: int, what: str) -> int:
    """libbpf 1.x returns -errno; turn a failure into our error, naming the call."""
    if ret < 0:
        err = -ret
        raise KernelFastPathUnavailable(f"{what}: {os.strerror(err)}", err)
    return ret


@dataclass(slots=True)
class BpfObject:
    """One loaded object file: its programs and maps by name; ``close()`` frees them all."""

    libbpf: LibBpf
    handle: int
    path: Path

    @classmethod
    def load(cls, libbpf: LibBpf, path: Path) -> BpfObject:
        if not path.exists():
            raise KernelFastPathUnavailable(
                f"{path} is missing: the BPF programs are compiled by `make bpf` (clang) "
                "when tunnelnet is installed, never on the hypervisor", errno.ENOENT)
        ctypes.set_errno(0)
        handle = libbpf.lib.bpf_object__open_file(str(path).encode(), None)
        if not handle:
            err = ctypes.get_errno() or errno.EINVAL
            raise KernelFastPathUnavailable(f"cannot open {path}: {os.strerror(err)}", err)
        obj = cls(libbpf, handle, path)
        ret = libbpf.lib.bpf_object__load(handle)
        if ret < 0:
            obj.close()
            err = -ret
            hint = " (needs CAP_BPF and CAP_NET_ADMIN, or root)" if err == errno.EPERM else ""
            raise KernelFastPathUnavailable(
                f"the kernel refused {path.name}: {os.strerror(err)}{hint}", err)
        return obj

    def program_fd(self, name: str) -> int:
        prog = self.libbpf.lib.bpf_object__find_program_by_name(self.handle, name.encode())
        if not prog:
            raise KernelFastPathUnavailable(f"{self.path.name} has no program {name!r}")
        return _check(self.libbpf.lib.bpf_program__fd(prog), f"program {name}")

    def map_fd(self, name: str) -> int:
        found = self.libbpf.lib.bpf_object__find_map_by_name(self.handle, name.encode())
        if not found:
            raise KernelFastPathUnavailable(f"{self.path.name} has no map {name!r}")
        return _check(self.libbpf.lib.bpf_map__fd(found), f"map {name}")

    def close(self) -> None:
        if self.handle:
            self.libbpf.lib.bpf_object__close(self.handle)
            self.handle = 0


BPF_TC_F_REPLACE: Final = 1  # libbpf.h
PORT_PRIORITY: Final = 1  # the tc priority (and handle 1) of our filters on VM ports and devices


def tc_attach(libbpf: LibBpf, ifindex: int, direction: TcDirection, prog_fd: int,
              handle: int = 1, priority: int = PORT_PRIORITY) -> None:
    """Attach ``prog_fd`` as a direct-action cls_bpf filter on the interface's clsact qdisc
    (made when missing; one that is there is shared, as tc shares it). A filter already at
    our handle and priority is replaced: one left by a vswitchd killed with SIGKILL would
    otherwise refuse the new one and go on replaying its stale plans."""
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=int(direction))
    ret = libbpf.lib.bpf_tc_hook_create(ctypes.byref(hook))
    if ret < 0 and -ret != errno.EEXIST:
        _check(ret, f"clsact qdisc on ifindex {ifindex}")
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=BPF_TC_F_REPLACE,
                   handle=handle, priority=priority)
    _check(libbpf.lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)),
           f"tc {direction.name.lower()} filter on ifindex {ifindex}")


def tc_detach(libbpf: LibBpf, ifindex: int, direction: TcDirection, handle: int = 1,
              priority: int = PORT_PRIORITY) -> None:
    """Remove the filter ``tc_attach`` put there; an interface already gone is no error."""
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=int(direction))
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
    ret = libbpf.lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    if ret < 0 and -ret not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
        _check(ret, f"detach tc {direction.name.lower()} on ifindex {ifindex}")
