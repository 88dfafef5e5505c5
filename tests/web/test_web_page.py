"""The web page in a real browser (Debian's Chromium driven by Playwright) over the demo lab.

The page is judged against sources it does not compute: the lab's state file (which VMs and
hypervisors exist), `tunnelnet trace --json` (the path of a packet, through the CLI), `tunnelnet
ofctl dump-flows` (a bridge's table) and `tunnelnet lab status --json` (tunnels). A screenshot
of an animated trace is kept in build/artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.tools import require_tool

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.toml"
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _tn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {entry["name"] for entry in json.loads(out or "[]")}


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if any(ns.startswith("tnl-") for ns in _netns()):
        pytest.skip("another lab is up on this machine (tnl-* namespaces exist)")
    directory = tmp_path_factory.mktemp("weblab")
    up = _tn("lab", "--dir", str(directory), "up", str(DEMO), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # every VM speaks once, so NORMAL has learned the MACs before the page and the CLI
        # are compared (a MAC learned between the two would change the path)
        vms = _state(directory)["vms"]
        for name, vm in vms.items():
            peer = next(p for p in vms if p != name and vms[p]["network"] == vm["network"])
            ping = _tn("lab", "--dir", str(directory), "ping", name, peer, timeout=60)
            assert ping.returncode == 0, ping.stdout + ping.stderr
        yield directory
    finally:
        down = _tn("lab", "--dir", str(directory), "down", timeout=240)
        assert down.returncode == 0, down.stdout + down.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def url(lab_dir: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunnelnet", "web", "--dir", str(lab_dir),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
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


@pytest.fixture(scope="module")
def browser(url: str) -> Iterator[Any]:
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        # Debian's browser, never a download (no `playwright install`)
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, url: str) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1500, "height": 820})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url + "/?step=60")  # a quicker animation: the test waits for its end
    pg.wait_for_function("window.tunnelnet && window.tunnelnet.refreshes > 0", timeout=15000)
    yield pg
    pg.close()
    assert errors == []


def _state(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab_dir / "state.json").read_text())
    return data


def test_page_draws_every_hypervisor_vm_and_tunnel_with_vms_coloured_by_tenant(
        page: Any, lab_dir: Path) -> None:
    state = _state(lab_dir)
    ids = set(page.evaluate("window.tunnelnet.cy.nodes().map(n => n.id())"))
    assert {i for i in ids if i.startswith("vm:")} == {f"vm:{v}" for v in state["vms"]}
    assert {i for i in ids if i.startswith("hv:")} == {f"hv:{h}" for h in state["hypervisors"]}
    for hv in state["hypervisors"]:
        assert {f"br:{hv}:br-int", f"br:{hv}:br-tun"} <= ids
    colour = page.evaluate("Object.fromEntries(window.tunnelnet.cy.nodes('.vm').map("
                           "n => [n.id().slice(3), n.style('background-color')]))")
    by_tenant: dict[str, set[str]] = {}
    for name, vm in state["vms"].items():
        by_tenant.setdefault(vm["tenant"], set()).add(colour[name])
    assert all(len(c) == 1 for c in by_tenant.values())  # one colour per tenant
    assert len(set.union(*by_tenant.values())) == len(by_tenant)  # and tenants differ
    # tunnels: one edge per pair of hypervisors and type that lab status reports
    status = json.loads(_tn("lab", "--dir", str(lab_dir), "status", "--json").stdout)
    ip_host = {h["ip"]: h["name"] for h in status["hypervisors"]}
    expected = set()
    for hv in status["hypervisors"]:
        for port in hv["tunnels"]:
            kind, hexip = port.split("-", 1)
            remote = socket.inet_ntoa(bytes.fromhex(hexip))
            a, b = sorted([hv["name"], ip_host[remote]])
            expected.add(f"tun:{a}:{b}:{kind}")
    edges = set(page.evaluate("window.tunnelnet.cy.edges('.tunnel').map(e => e.id())"))
    assert edges == expected


def _expected_path(journey: dict[str, Any]) -> list[str]:
    return [f"br:{v['host']}:{v['bridge']}" for v in journey["visits"]
            if not v["hypothetical"]]


@pytest.mark.parametrize("src,dst", [("red1", "red3"), ("blue1", "blue2"), ("red1", "red2"),
                                     ("red1", "blue2")])
def test_picking_two_vms_animates_the_path_of_the_json_trace(
        page: Any, lab_dir: Path, src: str, dst: str) -> None:
    journey = json.loads(_tn("trace", "--dir", str(lab_dir), src, dst, "--json").stdout)
    page.select_option("#src", src)
    page.select_option("#dst", dst)
    page.click("#go")
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    path = page.evaluate("window.tunnelnet.path")
    assert [p for p in path if p.startswith("br:")] == _expected_path(journey)
    assert path[0] == f"vm:{src}"
    assert (path[-1] == f"vm:{dst}") == journey["outcome"]["delivered"]
    if not journey["outcome"]["delivered"]:
        assert f"vm:{dst}" not in path
    drawn = set(page.evaluate("window.tunnelnet.cy.elements('.onpath').map(e => e.id())"))
    assert drawn == set(path)
    # the side panel lists the same bridges, each with the tables the JSON names
    sections = page.eval_on_selector_all(
        "section.visit", "els => els.map(e => [e.dataset.host, e.dataset.bridge, "
        "[...e.querySelectorAll('li')].map(li => Number(li.dataset.table))])")
    assert sections == [[v["host"], v["bridge"], [s["table"] for s in v["steps"]]]
                        for v in journey["visits"]]
    status = page.text_content("#status")
    assert status == ("delivered" if journey["outcome"]["delivered"] else "not delivered")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-trace-{src}-{dst}.png"))


def test_clicking_a_bridge_shows_its_dump_flows_with_counters(page: Any,
                                                              lab_dir: Path) -> None:
    state = _state(lab_dir)
    rundir = state["hypervisors"]["hv1"]["rundir"]
    # (a statement, not an expression: returning the cytoscape element would make Playwright
    # serialise its whole object graph)
    page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun').emit('tap'); }")
    page.wait_for_selector("#flows[data-bridge=br-tun]", timeout=10000)
    shown = page.eval_on_selector_all("#flows div", "els => els.map(e => e.textContent)")
    dumped = _tn("ofctl", "--rundir", rundir, "dump-flows", "br-tun").stdout.splitlines()

    def agent_flows(lines: list[str]) -> set[str]:
        # the agent's own flows (learned ones may come and go between the two reads)
        return {line.strip().rsplit(", ", 1)[1] for line in lines if "hard_timeout" not in line
                and "priority=" in line}

    assert agent_flows(shown) == agent_flows(dumped)
    assert all("n_packets=" in line for line in shown)


def test_after_a_trace_the_bridge_table_highlights_the_flows_the_trace_matched(
        page: Any, lab_dir: Path) -> None:
    journey = json.loads(_tn("trace", "--dir", str(lab_dir), "red1", "red3", "--json").stdout)
    page.select_option("#src", "red1")
    page.select_option("#dst", "red3")
    page.click("#go")
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun').emit('tap'); }")
    page.wait_for_selector("#flows[data-bridge=br-tun] div.hit", timeout=10000)
    hits = page.eval_on_selector_all("#flows div.hit", "els => els.map(e => e.textContent)")
    steps = next(v["steps"] for v in journey["visits"]
                 if (v["host"], v["bridge"]) == ("hv1", "br-tun"))
    assert len(hits) == len(steps) == 3
    for line, step in zip(sorted(hits, key=lambda x: int(x.split("table=")[1].split(",")[0])),
                          steps, strict=True):
        assert f"table={step['table']}," in line
        assert f"priority={step['priority']}" in line and step["match"] in line


def test_state_refreshes_without_reloading(page: Any) -> None:
    first = page.evaluate("window.tunnelnet.refreshes")
    page.wait_for_function(f"window.tunnelnet.refreshes > {first + 1}", timeout=10000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_a_vm_booted_in_the_running_lab_appears_with_its_tunnels_without_reloading(
        page: Any, lab_dir: Path) -> None:
    # (last in this module: it changes the lab) hv3 has no red VM yet, so with l2population
    # it has no VXLAN tunnel; a red VM booted there must bring both onto the page
    before = set(page.evaluate("window.tunnelnet.cy.edges('.tunnel').map(e => e.id())"))
    assert "tun:hv1:hv3:vxlan" not in before
    added = _tn("lab", "--dir", str(lab_dir), "add-vm", "red4", "--network", "red-net",
                "--hypervisor", "hv3")
    assert added.returncode == 0, added.stderr
    page.wait_for_function("window.tunnelnet.cy.getElementById('vm:red4').nonempty() && "
                           "window.tunnelnet.cy.getElementById('tun:hv1:hv3:vxlan').nonempty()",
                           timeout=20000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    parent = page.evaluate("window.tunnelnet.cy.getElementById('vm:red4').parent().id()")
    assert parent == "hv:hv3"


def teardown_module() -> None:
    # keep one screenshot under a stable name for the README's maintainer to copy
    shot = ARTIFACTS / "web-trace-red1-red3.png"
    if shot.exists():
        shutil.copyfile(shot, ARTIFACTS / "web-trace.png")
