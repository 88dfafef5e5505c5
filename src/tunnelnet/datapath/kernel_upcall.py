"""Tunnel misses handed up from the kernel fast path: the way a frame the kernel has no plan
for reaches Python once the collect_md VXLAN device owns UDP 4789.

``tunnel_ingress`` writes each miss to the ``upcalls`` perf event array: an ``UpcallMeta``
(VNI, outer source) followed by the inner frame. libbpf's perf buffer reads the per-CPU rings;
``poll`` hands back ``TunnelMiss`` records, and ``fileno()`` is an epoll descriptor an event
loop can wait on. A full ring loses samples: they are counted in ``lost``, never blocking
the kernel.
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass
from typing import Generic, TypeVar

from tunnelnet.datapath.kernel_fastpath import KernelFastPath
from tunnelnet.datapath.kernel_loader import KernelFastPathUnavailable
from tunnelnet.datapath.kernel_maps import DatagramMeta, UpcallMeta
from tunnelnet.packet.offload import finish_if_partial

_SAMPLE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_uint32)
_LOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)
_META_SIZE = ctypes.sizeof(UpcallMeta)
T = TypeVar("T")
PAGES_PER_CPU = 16  # 64 KiB a CPU: a burst of full-size frames, or one GSO super-frame


@dataclass(frozen=True, slots=True)
class TunnelMiss:
    """A VXLAN frame from ``remote_ip`` with ``vni`` that no tunnel plan matched."""

    vni: int
    remote_ip: str
    frame: bytes
    gso_size: int = 0  # a GRO super-frame's segment size; 0 for an ordinary frame


@dataclass(frozen=True, slots=True)
class UnderlayDatagram:
    """A UDP 4789 datagram the collect_md device would have dropped unseen (underlay_ingress):
    its payload, as Python's VXLAN socket would have read it, and its source."""

    remote_ip: str
    payload: bytes


class _Rings(Generic[T]):
    """One perf event array's per-CPU rings, read with libbpf; ``close()`` frees them.
    A subclass names the map and decodes its samples into ``T`` records."""

    MAP = ""

    def __init__(self, fastpath: KernelFastPath, pages_per_cpu: int = PAGES_PER_CPU) -> None:
        lib = fastpath.libbpf.lib
        lib.perf_buffer__new.restype = ctypes.c_void_p
        lib.perf_buffer__new.argtypes = [ctypes.c_int, ctypes.c_size_t, _SAMPLE_FN, _LOST_FN,
                                         ctypes.c_void_p, ctypes.c_void_p]
        lib.perf_buffer__poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.perf_buffer__epoll_fd.argtypes = [ctypes.c_void_p]
        lib.perf_buffer__free.argtypes = [ctypes.c_void_p]
        lib.perf_buffer__consume.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._pending: list[T] = []
        self.lost = 0
        # referenced for as long as libbpf may call them
        self._on_sample = _SAMPLE_FN(self._sample)
        self._on_lost = _LOST_FN(self._lost)
        ctypes.set_errno(0)
        self._buffer = lib.perf_buffer__new(fastpath.obj.map_fd(self.MAP), pages_per_cpu,
                                            self._on_sample, self._on_lost, None, None)
        if not self._buffer:
            err = ctypes.get_errno()
            raise KernelFastPathUnavailable(
                f"cannot open the upcall rings (perf events): errno {err}", err)

    def _sample(self, ctx: int | None, cpu: int, data: int | None, size: int) -> None:
        raise NotImplementedError

    def _lost(self, ctx: int | None, cpu: int, count: int) -> None:
        self.lost += count

    def poll(self, timeout_ms: int = 0) -> list[T]:
        """The misses that arrived, waiting up to ``timeout_ms`` for the first."""
        ret = self._lib.perf_buffer__poll(self._buffer, timeout_ms)
        if ret < 0 and ret != -4:  # -EINTR: a signal, try again next round
            raise KernelFastPathUnavailable(f"polling the upcall rings failed: errno {-ret}",
                                            -ret)
        if not self._pending:
            # the rings' epoll descriptor can show ready to an outer epoll (the event
            # loop's) while an epoll_wait on it right after still finds nothing: read every
            # ring directly (a few CPUs, cheap) rather than trust the wakeup
            ret = self._lib.perf_buffer__consume(self._buffer)
            if ret < 0 and ret != -4:
                raise KernelFastPathUnavailable(f"reading the upcall rings failed: errno {-ret}",
                                                -ret)
        got, self._pending = self._pending, []
        return got

    def fileno(self) -> int:
        return int(self._lib.perf_buffer__epoll_fd(self._buffer))

    def close(self) -> None:
        if self._buffer:
            self._lib.perf_buffer__free(self._buffer)
            self._buffer = None


class UpcallReader(_Rings[TunnelMiss]):
    """Reads the tunnel misses of one loaded fast path (tunnel_ingress)."""

    MAP = "upcalls"

    def _sample(self, ctx: int | None, cpu: int, data: int | None, size: int) -> None:
        if not data or size < _META_SIZE:
            return
        meta = UpcallMeta.from_address(data)
        if _META_SIZE + meta.frame_len > size:  # cannot happen unless the layouts disagree
            return
        frame = ctypes.string_at(data + _META_SIZE, meta.frame_len)
        if not meta.gso_size:
            # the copy lost the skb's CHECKSUM_PARTIAL: a checksum a sender's kernel left to
            # be finished (over a veth underlay) is finished here, as the device would have
            frame = finish_if_partial(frame)
        remote = str(ipaddress.IPv4Address(meta.remote_ipv4))
        self._pending.append(TunnelMiss(meta.vni, remote, frame, meta.gso_size))


_DATAGRAM_META_SIZE = ctypes.sizeof(DatagramMeta)


class DatagramReader(_Rings[UnderlayDatagram]):
    """Reads the VXLAN datagrams underlay_ingress handed up (``UnderlayDatagram``)."""

    MAP = "datagram_upcalls"

    def _sample(self, ctx: int | None, cpu: int, data: int | None, size: int) -> None:
        if not data or size < _DATAGRAM_META_SIZE:
            return
        meta = DatagramMeta.from_address(data)
        end = meta.payload_offset + meta.payload_len
        if meta.packet_len > size - _DATAGRAM_META_SIZE or end > meta.packet_len:
            return  # cannot happen unless the layouts disagree
        payload = ctypes.string_at(data + _DATAGRAM_META_SIZE + meta.payload_offset,
                                   meta.payload_len)
        remote = str(ipaddress.IPv4Address(meta.remote_ipv4))
        self._pending.append(UnderlayDatagram(remote, payload))
