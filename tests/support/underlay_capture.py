"""What crosses a namespace lab's underlay while two VMs ping, captured by tcpdump on the
underlay bridge and read back as raw frames, for the tests that judge the tunnels' bytes with
scapy and our decoder (the Geneve labs)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether

from support.lab_cli import run_lab
from support.tools import require_tool
from tunnelnet.trace.pcap import read_frames

BFD_PORT = 3784  # RFC 5881's single-hop control port


def underlay_frames_of_a_ping(prefix: str, lab_dir: Path, pcap: Path, src: str, dst: str
                              ) -> list[bytes]:
    """Every UDP frame on the underlay bridge while ``lab ping SRC DST`` runs (which must
    succeed), as captured into ``pcap``."""
    tcpdump = require_tool("tcpdump")
    proc = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-underlay", tcpdump, "-U", "-n",
                             "-i", "br-underlay", "-w", str(pcap), "udp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # tcpdump is listening once it has opened the interface
        ping = run_lab(prefix, lab_dir, "ping", src, dst)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
    return read_frames(pcap)


def is_tunnel_bfd(frame: bytes) -> bool:
    """A BFD control packet inside a tunnel (the inner UDP datagram goes to port 3784), read
    by scapy from the inner frame (its VXLAN layer may not be loaded to find it itself)."""
    outer = Ether(frame)
    for layer in (GENEVE, UDP):
        if outer.haslayer(layer):
            payload = bytes(outer[layer].payload)
            inner = Ether(payload[8:] if layer is UDP else payload)
            found = inner.getlayer(UDP)
            return found is not None and found.dport == BFD_PORT
    return False
