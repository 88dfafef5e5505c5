"""tunnelnet: tunnel-based network virtualization (VXLAN and GRE overlays) in Python."""

from __future__ import annotations

__version__ = "0.1.0"
