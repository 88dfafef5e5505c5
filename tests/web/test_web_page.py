"""The web page in a real browser (Debian's Chromium driven by Playwright) over the demo lab on
real namespaces.

The page is judged against sources it does not compute: `tunnelnet lab status --json`
(hypervisors, VMs, tunnels, agents), the topology file (segments), `tunnelnet trace --json`
(the path of a packet, through the CLI) and `tunnelnet ofctl dump-flows` (a bridge's table,
its counters). The lab has a namespace prefix of its own, so it can be up beside another.
Screenshots go to build/artifacts/web/; web-trace.png is the README's picture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webpage import (
    ARTIFACTS,
    ROOT,
    check_tenant_colours,
    check_tunnels,
    crossings,
    drawing,
    open_page,
    screenshot,
    tn,
    topology_networks,
    web_server,
)

from support.lab_cli import lab_state, run_lab, running_lab
from tunnelnet.lab.probe import ping
from tunnelnet.lab.state import StateFile

pytestmark = pytest.mark.netns

DEMO = ROOT / "examples" / "demo.toml"
# our own namespace prefix: this lab can be up beside a developer's `make demo` lab
PREFIX = f"twp{os.getpid() % 10000}"
ENV = {"TUNNELNET_LAB_PREFIX": PREFIX}


def _lab(lab_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, timeout=timeout)


def _status(lab_dir: Path) -> dict[str, Any]:
    proc = _lab(lab_dir, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("weblab")
    # (the last test takes the lab down itself; a second down finds nothing and says so)
    with running_lab(PREFIX, DEMO, directory):
        # every VM speaks once, so NORMAL has learned the MACs before the page and the CLI
        # are compared (a MAC learned between the two would change the path); pinged from
        # here as `lab ping` does, without an interpreter to start per VM
        vms = StateFile(directory).load().vms
        for name, vm in vms.items():
            peer = next(p for p in vms.values() if p.name != name and p.network == vm.network)
            assert ping(vm, peer, count=1).reached(peer), (name, peer.name)
        yield directory


@pytest.fixture(scope="module")
def url(lab_dir: Path) -> Iterator[str]:
    with web_server(lab_dir, ENV) as base:
        yield base


@pytest.fixture
def page(browser: Any, url: str) -> Iterator[Any]:
    with open_page(browser, url) as pg:
        yield pg


def test_the_drawing_is_the_lab(page: Any, lab_dir: Path) -> None:
    state = lab_state(lab_dir)
    d = drawing(page)
    ids = {n["id"] for n in d["nodes"]}
    assert {i for i in ids if i.startswith("vm:")} == {f"vm:{v}" for v in state["vms"]}
    assert {i for i in ids if i.startswith("hv:")} == {f"hv:{h}" for h in state["hypervisors"]}
    for hv in state["hypervisors"]:
        assert {f"br:{hv}:br-int", f"br:{hv}:br-tun"} <= ids
    status = _status(lab_dir)
    check_tenant_colours(d, {vm["name"]: vm for vm in status["vms"]})
    check_tunnels(d, status, topology_networks(DEMO))
    assert crossings(d) == []
    screenshot(page, "real-demo")


def _expected_path(journey: dict[str, Any]) -> list[str]:
    return [f"br:{v['host']}:{v['bridge']}" for v in journey["visits"]
            if not v["hypothetical"]]


@pytest.mark.parametrize("src,dst", [("red1", "red3"), ("blue1", "blue2"), ("red1", "red2"),
                                     ("red1", "blue2")])
def test_picking_two_vms_animates_the_path_of_the_json_trace(
        page: Any, lab_dir: Path, src: str, dst: str) -> None:
    journey = json.loads(tn("trace", "--dir", str(lab_dir), src, dst, "--json").stdout)
    page.select_option("#src", src)
    page.select_option("#dst", dst)
    page.click("#go")
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    path = page.evaluate("window.tunnelnet.path")
    assert [p for p in path if p.startswith("br:")] == _expected_path(journey)
    assert path[0] == f"vm:{src}"
    delivered = journey["outcome"]["delivered"]
    marks = page.evaluate("window.tunnelnet.marks")
    assert marks["destination"] == (f"vm:{dst}" if delivered else None)
    if not delivered:
        assert f"vm:{dst}" not in path
    drawn = set(page.evaluate("window.tunnelnet.cy.elements('.visited').map(e => e.id())"))
    assert drawn == set(path)
    # the side panel lists the same bridges, each with the tables the JSON names
    sections = page.eval_on_selector_all(
        "section.visit", "els => els.map(e => [e.dataset.host, e.dataset.bridge, "
        "[...e.querySelectorAll('li')].map(li => Number(li.dataset.table))])")
    assert sections == [[v["host"], v["bridge"], [s["table"] for s in v["steps"]]]
                        for v in journey["visits"]]
    status = page.text_content("#status")
    assert status == ("delivered" if delivered else "not delivered")
    page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun').emit('tap'); }")
    page.wait_for_selector("#flows[data-bridge=br-tun]", timeout=10000)
    screenshot(page, f"web-trace-{src}-{dst}")


def _flows_shown(page: Any) -> list[str]:
    lines: list[str] = page.eval_on_selector_all("#flows div", "els => els.map(e => "
                                                 "e.textContent)")
    return lines


def test_clicking_a_bridge_shows_its_dump_flows_with_live_counters(
        page: Any, lab_dir: Path) -> None:
    state = lab_state(lab_dir)
    rundir = state["hypervisors"]["hv1"]["rundir"]
    # (a statement, not an expression: returning the cytoscape element would make Playwright
    # serialise its whole object graph)
    page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun').emit('tap'); }")
    page.wait_for_selector("#flows[data-bridge=br-tun]", timeout=10000)
    shown = _flows_shown(page)
    dumped = tn("ofctl", "--rundir", rundir, "dump-flows", "br-tun").stdout.splitlines()

    def agent_flows(lines: list[str]) -> set[str]:
        # the agent's own flows (learned ones may come and go between the two reads)
        return {line.strip().rsplit(", ", 1)[1] for line in lines if "hard_timeout" not in line
                and "priority=" in line}

    assert agent_flows(shown) == agent_flows(dumped)
    assert all("n_packets=" in line for line in shown)
    assert "live" in (page.text_content("#flows-title") or "")

    # "live": a ping across the tunnel moves them on the page, without a reload
    def packets(lines: list[str]) -> int:
        return sum(int(m.group(1)) for line in lines
                   for m in [re.search(r"n_packets=(\d+)", line)] if m)

    before = packets(shown)
    ping = _lab(lab_dir, "ping", "red1", "red3", timeout=60)
    assert ping.returncode == 0, ping.stderr
    page.wait_for_function(
        "n => [...document.querySelectorAll('#flows div')].reduce((s, e) => "
        "s + Number((e.textContent.match(/n_packets=(\\d+)/) || [0, 0])[1]), 0) > n",
        arg=before, timeout=10000)


def test_after_a_trace_the_bridge_table_highlights_the_flows_the_trace_matched(
        page: Any, lab_dir: Path) -> None:
    journey = json.loads(tn("trace", "--dir", str(lab_dir), "red1", "red3", "--json").stdout)
    page.select_option("#src", "red1")
    page.select_option("#dst", "red3")
    page.click("#go")
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun').emit('tap'); }")
    page.wait_for_selector("#flows[data-bridge=br-tun] div.hit", timeout=10000)
    # one read of the table and the bridge it shows, so a live redraw cannot split them
    shown = page.evaluate("() => { const pre = document.getElementById('flows'); return {"
                          "bridge: pre.dataset.bridge, host: pre.dataset.host, hits: "
                          "[...pre.querySelectorAll('div.hit')].map(e => e.textContent)}; }")
    assert (shown["host"], shown["bridge"]) == ("hv1", "br-tun")
    hits = shown["hits"]
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


def test_a_stopped_agent_is_drawn_down_at_once(page: Any, lab_dir: Path) -> None:
    # the controller would call it alive until its heartbeats are late; its process is gone now
    stop = _lab(lab_dir, "stop", "agent-hv2")
    assert stop.returncode == 0, stop.stderr
    try:
        page.wait_for_function("window.tunnelnet.cy.getElementById('hv:hv2').hasClass('dead')",
                               timeout=10000)
        label = page.evaluate("window.tunnelnet.cy.getElementById('hv:hv2').style('label')")
        assert "agent down" in label
    finally:
        start = _lab(lab_dir, "start", "agent-hv2")
        assert start.returncode == 0, start.stderr
    page.wait_for_function("!window.tunnelnet.cy.getElementById('hv:hv2').hasClass('dead')",
                           timeout=30000)


def test_a_vm_booted_in_the_running_lab_appears_with_its_tunnels_without_reloading(
        page: Any, lab_dir: Path) -> None:
    # (it changes the lab) hv3 has no red VM yet, so with l2population it has no VXLAN tunnel;
    # a red VM booted there must bring both onto the page
    before = set(page.evaluate("window.tunnelnet.cy.edges('.tunnel').map(e => e.id())"))
    assert "tun:hv1:hv3:vxlan" not in before
    added = _lab(lab_dir, "add-vm", "red4", "--network", "red-net", "--hypervisor", "hv3")
    assert added.returncode == 0, added.stderr
    page.wait_for_function("window.tunnelnet.cy.getElementById('vm:red4').nonempty() && "
                           "window.tunnelnet.cy.getElementById('tun:hv1:hv3:vxlan').nonempty()",
                           timeout=20000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    parent = page.evaluate("window.tunnelnet.cy.getElementById('vm:red4').parent().id()")
    assert parent == "hv:hv3"
    assert crossings(drawing(page)) == []  # laid out again with the new VM


def test_a_switch_that_does_not_answer_is_said_so(page: Any, lab_dir: Path) -> None:
    stop = _lab(lab_dir, "stop", "vswitchd-hv3")
    assert stop.returncode == 0, stop.stderr
    try:
        page.wait_for_selector("#warnings", state="visible", timeout=10000)
        assert "hv3" in (page.text_content("#warnings") or "")
        label = page.evaluate("window.tunnelnet.cy.getElementById('hv:hv3').style('label')")
        assert "switch not answering" in label
        assert page.locator("#banner").is_hidden()  # the lab itself is up
        screenshot(page, "real-switch-hv3-stopped")
    finally:
        start = _lab(lab_dir, "start", "vswitchd-hv3")
        assert start.returncode == 0, start.stderr
    page.wait_for_selector("#warnings", state="hidden", timeout=30000)


def test_a_lab_taken_down_is_a_banner_not_a_blank_page(page: Any, lab_dir: Path,
                                                       url: str) -> None:
    # (last in this module: it takes the lab down)
    assert page.locator("#banner").is_hidden()
    down = _lab(lab_dir, "down", timeout=240)
    assert down.returncode == 0, down.stderr
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}/api/state", timeout=10)
    assert err.value.code == 503 and json.loads(err.value.read())["lab_down"] is True
    page.wait_for_selector("#banner", state="visible", timeout=10000)
    assert "down" in (page.text_content("#banner") or "")
    # what was drawn stays (dimmed) for the learner to look at
    assert page.evaluate("window.tunnelnet.cy.nodes('.vm').length") > 0
    screenshot(page, "real-lab-down")


def teardown_module() -> None:
    # the README's picture: red1 to red3 over VXLAN, hv1 br-tun's flows below
    shot = ARTIFACTS / "web-trace-red1-red3.png"
    if shot.exists():
        shutil.copyfile(shot, ARTIFACTS / "web-trace.png")
