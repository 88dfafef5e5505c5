"""What the page tests share: `tunnelnet web` on a free port, the page opened in the browser,
screenshots, and the checks of the drawing against the lab's own JSON."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tunnelnet.packet import tunnel_kinds

ROOT = Path(__file__).resolve().parents[2]
# screenshots for people to look at; build/ is not committed
ARTIFACTS = Path(os.environ.get("TUNNELNET_ARTIFACTS", ROOT / "build" / "artifacts" / "web"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def tn(*args: str, env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def web_server(lab_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`tunnelnet web` over the lab in ``lab_dir``; yields its base URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunnelnet", "web", "--dir", str(lab_dir),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/state", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"tunnelnet web did not come up: {err}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


@contextmanager
def web_in_process(lab_dir: Path) -> Iterator[str]:
    """The app `tunnelnet web` serves, in a thread of this process (no interpreter to start,
    which on a busy machine costs seconds); yields its base URL."""
    import threading

    import uvicorn

    from tunnelnet.trace.open import open_lab
    from tunnelnet.web.app import create_app
    from tunnelnet.web.status import DirectoryStatus

    port = _free_port()
    app = create_app(lambda: open_lab(lab_dir), DirectoryStatus(lab_dir))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the web app did not come up")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def open_page(browser: Any, url: str, width: int = 1500, height: int = 820) -> Iterator[Any]:
    """The page, loaded and drawn once; page errors fail the test."""
    pg = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url + "/?step=40")  # a quicker animation: the tests wait for its end
    pg.wait_for_function("window.tunnelnet && window.tunnelnet.refreshes > 0", timeout=15000)
    try:
        yield pg
    finally:
        pg.close()
    assert errors == []


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# -- the drawing, read back from the rendered page ------------------------------------------

_READ = """() => {
  const cy = window.tunnelnet.cy;
  const opts = { includeLabels: false, includeOverlays: false, includeUnderlays: false,
                 includeOutlines: false };
  return {
    nodes: cy.nodes().map(n => ({ id: n.id(), classes: n.classes(),
      ancestors: n.ancestors().map(a => a.id()), pos: n.position(), box: n.boundingBox(opts),
      fill: n.style('background-color'), ring: n.style('border-color'),
      ringStyle: n.style('border-style'), label: n.style('label') })),
    edges: cy.edges().map(e => ({ id: e.id(), source: e.source().id(),
      target: e.target().id(), classes: e.classes(), label: e.style('label') })),
    legend: [...document.querySelectorAll('#legend .tenant')].map(t => ({
      tenant: t.dataset.tenant,
      colour: getComputedStyle(t.querySelector('.swatch')).backgroundColor,
      networks: [...t.querySelectorAll('.net')].map(n => ({ name: n.dataset.network,
        style: getComputedStyle(n.querySelector('.swatch')).borderTopStyle })) })),
  };
}"""


def drawing(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(_READ)
    return result


def rgb(text: str) -> tuple[int, int, int]:
    """'rgb(255,0,0)' or 'rgb(255, 0, 0)' -> (255, 0, 0)."""
    parts = [round(float(x)) for x in re.findall(r"[\d.]+", text)[:3]]
    return parts[0], parts[1], parts[2]


def check_tenant_colours(d: dict[str, Any], vms: dict[str, dict[str, Any]]) -> None:
    """A legend entry per tenant in a colour of its own; each VM filled with its tenant's
    colour and ringed with a darker shade of it (same hue); the networks of one tenant told
    apart by the ring's style, as the legend shows it."""
    legend = {e["tenant"]: e for e in d["legend"]}
    assert set(legend) == {vm["tenant"] for vm in vms.values()}
    colours = {t: rgb(e["colour"]) for t, e in legend.items()}
    assert len(set(colours.values())) == len(colours), colours
    styles = {n["name"]: n["style"] for e in legend.values() for n in e["networks"]}
    nodes = {n["id"]: n for n in d["nodes"]}
    for name, vm in vms.items():
        node = nodes[f"vm:{name}"]
        fill, ring = rgb(node["fill"]), rgb(node["ring"])
        assert fill == colours[vm["tenant"]], (name, fill, colours)
        k = max(ring) / max(fill)
        assert 0.2 < k < 1, (name, ring, fill)  # darker, not black
        assert all(abs(r - k * f) <= 2 for r, f in zip(ring, fill, strict=True)), (name, ring)
        assert node["ringStyle"] == styles[vm["network"]], (name, node["ringStyle"], styles)
    for tenant in legend:
        nets = legend[tenant]["networks"]
        assert len({n["style"] for n in nets}) == len(nets), (tenant, nets)


def tunnel_edges_of_status(status: dict[str, Any]) -> set[str]:
    """The tunnel edges the page must draw: one per pair of hypervisors and kind, from the
    tunnel ports `lab status --json` lists (named <kind prefix>-<peer IPv4 in hex>)."""
    by_prefix = {k.port_prefix: k.name for k in tunnel_kinds.all_kinds()}
    ip_host = {h["ip"]: h["name"] for h in status["hypervisors"]}
    out = set()
    for hv in status["hypervisors"]:
        for port in hv["tunnels"]:
            prefix, hexip = port.rsplit("-", 1)
            remote = socket.inet_ntoa(bytes.fromhex(hexip))
            a, b = sorted([hv["name"], ip_host[remote]])
            out.add(f"tun:{a}:{b}:{by_prefix[prefix]}")
    return out


def check_tunnels(d: dict[str, Any], status: dict[str, Any],
                  networks: dict[str, tuple[str, int | None]]) -> None:
    """Every tunnel of the lab drawn once, labelled with its kind's title (the registry's),
    the key of each network with VMs at both ends, and both endpoint addresses; the underlay
    drawn, every hypervisor on it with its address."""
    edges = {e["id"]: e for e in d["edges"] if "tunnel" in e["classes"]}
    assert set(edges) == tunnel_edges_of_status(status)
    ips = {h["name"]: h["ip"] for h in status["hypervisors"]}
    hosts: dict[str, set[str]] = {}
    for vm in status["vms"]:
        hosts.setdefault(vm["network"], set()).add(vm["hypervisor"])
    for edge_id, edge in edges.items():
        _, a, b, kind_name = edge_id.split(":")
        kind = tunnel_kinds.kind(kind_name)
        label = edge["label"]
        assert kind.title in label and ips[a] in label and ips[b] in label, label
        keys = [seg for net, (t, seg) in networks.items()
                if t == kind_name and {a, b} <= hosts.get(net, set())]
        assert keys, f"{edge_id}: a tunnel the lab made carries no network"
        for key in (k for k in keys if k is not None):
            assert re.search(rf"\b{kind.key_name}\b.*\b{key}\b", label), (label, key)
    underlay = {e["target"]: e["label"] for e in d["edges"] if e["source"] == "underlay"}
    assert underlay.keys() == {f"br:{h}:br-tun" for h in ips}
    for host, ip in ips.items():
        assert ip in underlay[f"br:{host}:br-tun"]


def check_physical(d: dict[str, Any], status: dict[str, Any],
                   networks: dict[str, tuple[str, int | None]]) -> None:
    """VLAN networks drawn over the physical network, not a tunnel: one edge per pair of
    hypervisors that share one, labelled with each shared network's VLAN id."""
    hosts: dict[str, set[str]] = {}
    for vm in status["vms"]:
        hosts.setdefault(vm["network"], set()).add(vm["hypervisor"])
    names = sorted(h["name"] for h in status["hypervisors"])
    expected: dict[str, list[int | None]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            vlans = [seg for net, (t, seg) in networks.items()
                     if t == "vlan" and {a, b} <= hosts.get(net, set())]
            if vlans:
                expected[f"phys:{a}:{b}"] = vlans
    edges = {e["id"]: e for e in d["edges"] if "physical" in e["classes"]}
    assert set(edges) == set(expected)
    for edge_id, vlans in expected.items():
        for vlan in (v for v in vlans if v is not None):
            assert re.search(rf"\bVLAN {vlan}\b", edges[edge_id]["label"]), edges[edge_id]
        # and no tunnel claims a VLAN network's traffic
        assert "tunnel" not in edges[edge_id]["classes"]


def _hits(p: dict[str, float], q: dict[str, float], box: dict[str, float]) -> bool:
    """Whether segment p-q enters the box (its inside, one pixel in from the edge)."""
    x1, y1, x2, y2 = box["x1"] + 1, box["y1"] + 1, box["x2"] - 1, box["y2"] - 1
    t0, t1 = 0.0, 1.0
    dx, dy = q["x"] - p["x"], q["y"] - p["y"]
    for pk, qk in ((-dx, p["x"] - x1), (dx, x2 - p["x"]), (-dy, p["y"] - y1),
                   (dy, y2 - p["y"])):
        if pk == 0:
            if qk < 0:
                return False
            continue
        r = qk / pk
        if pk < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
        if t0 > t1:
            return False
    return True


def crossings(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(edge, node) for each edge whose straight line passes through a node that is neither
    of its ends nor a hypervisor holding one of them, from the rendered positions."""
    nodes = {n["id"]: n for n in d["nodes"]}
    bad = []
    for e in d["edges"]:
        s, t = nodes[e["source"]], nodes[e["target"]]
        ends = {s["id"], t["id"], *s["ancestors"], *t["ancestors"]}
        for n in d["nodes"]:
            if n["id"] not in ends and _hits(s["pos"], t["pos"], n["box"]):
                bad.append((e["id"], n["id"]))
    return bad


def topology_networks(path: Path) -> dict[str, tuple[str, int | None]]:
    """Network name -> (type, segment) as the topology file declares them (None: none
    declared, the controller allocates one)."""
    doc = tomllib.loads(path.read_text())
    return {n["name"]: (n["type"], int(n["segment"]) if "segment" in n else None)
            for n in doc["network"]}
