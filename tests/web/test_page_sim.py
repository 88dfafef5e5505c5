"""The web page over simulated labs (no root, no namespaces: fast), judged against sources it
does not compute: `tunnelnet lab status --json` (hypervisors, VMs, tunnel ports, agents), the
topology file (segments), `tunnelnet trace --json` (a packet's way) and the tunnel-kind
registry (titles and key names). Screenshots go to build/artifacts/web/.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from webpage import (
    ROOT,
    check_physical,
    check_tenant_colours,
    check_tunnels,
    crossings,
    drawing,
    open_page,
    rgb,
    screenshot,
    tn,
    topology_networks,
    web_in_process,
    web_server,
)

from tunnelnet.lab.sim_wire import SimClient

DEMO = ROOT / "examples" / "demo.toml"
FOUR = Path(__file__).with_name("four-hypervisors.toml")
TWO = ROOT / "examples" / "vlan-vs-tunnel.toml"
GENEVE = ROOT / "examples" / "geneve.toml"  # a kind added after the page: its title still shows


class SimLab:
    """A simulated lab up in a directory of its own, and the web page over it."""

    def __init__(self, directory: Path, topology: Path) -> None:
        self.directory = directory
        self.topology = topology
        self.url = ""

    def lab(self, *args: str) -> str:
        proc = tn("lab", "--dir", str(self.directory), *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def status(self) -> dict[str, Any]:
        """What `tunnelnet lab status --json` prints for a simulated lab: the sim server's
        own answer (asked here directly, without starting an interpreter)."""
        data: dict[str, Any] = SimClient(self.directory, timeout=30).call("status")
        return data

    def vms(self) -> dict[str, dict[str, Any]]:
        return {vm["name"]: vm for vm in self.status()["vms"]}


def _each(labs: dict[str, SimLab], args: Callable[[SimLab], list[str]]) -> None:
    """A lab command for every lab at once (each starts an interpreter: in parallel, they
    wait less for the machine's cores)."""
    procs = {name: subprocess.Popen([sys.executable, "-m", "tunnelnet", "lab", "--dir",
                                     str(lab.directory), *args(lab)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, lab in labs.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: {out}{err}"


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SimLab]]:
    labs = {name: SimLab(tmp_path_factory.mktemp(f"sim{name}"), topology)
            for name, topology in (("demo", DEMO), ("four", FOUR), ("two", TWO),
                                   ("geneve", GENEVE))}
    try:
        _each(labs, lambda lab: ["up", "--sim", str(lab.topology)])
        with contextlib.ExitStack() as stack:
            for name, lab in labs.items():
                # the demo through the `tunnelnet web` command itself, the others in-process
                lab.url = stack.enter_context(web_server(lab.directory) if name == "demo"
                                              else web_in_process(lab.directory))
            yield labs
    finally:
        _each({name: lab for name, lab in labs.items()
               if (lab.directory / "state.json").exists()}, lambda _lab: ["down"])


@pytest.fixture(scope="module")
def demo(labs: dict[str, SimLab]) -> SimLab:
    return labs["demo"]


@pytest.mark.parametrize("which", ["demo", "four", "two", "geneve"])
def test_the_drawing_is_the_lab(browser: Any, labs: dict[str, SimLab], which: str) -> None:
    lab = labs[which]
    with open_page(browser, lab.url) as page:
        d = drawing(page)
        status = lab.status()
        vms = {vm["name"]: vm for vm in status["vms"]}
        assert {n["id"] for n in d["nodes"] if n["id"].startswith("vm:")} == \
            {f"vm:{name}" for name in vms}
        check_tenant_colours(d, vms)
        check_tunnels(d, status, topology_networks(lab.topology))
        check_physical(d, status, topology_networks(lab.topology))
        assert crossings(d) == []
        screenshot(page, f"sim-{which}")


def _trace(page: Any, src: str, dst: str, proto: str) -> None:
    page.select_option("#src", src)
    page.select_option("#dst", dst)
    page.select_option("#proto", proto)
    page.click("#go")
    page.wait_for_selector("#status[data-state=done]", timeout=30000)


@pytest.mark.parametrize("src,dst,proto", [("red1", "red3", "arp"), ("red1", "red3", "icmp"),
                                           ("blue1", "blue2", "arp"),
                                           ("red1", "blue2", "icmp")])
def test_a_trace_marks_the_destination_and_the_discarded_copies(
        browser: Any, demo: SimLab, src: str, dst: str, proto: str) -> None:
    proc = tn("trace", "--dir", str(demo.directory), src, dst, "--proto", proto, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    journey = json.loads(proc.stdout)
    ends = [e for e in journey["outcome"]["ends"] if not e["hypothetical"]]
    delivered = [e["vm"] for e in ends if e["what"] == "delivered"]
    copies = {e["vm"] for e in ends if e["what"] in ("flooded", "discarded")}
    with open_page(browser, demo.url) as page:
        _trace(page, src, dst, proto)
        marks = page.evaluate("window.tunnelnet.marks")
        labels = page.evaluate("Object.fromEntries(window.tunnelnet.cy.nodes('.vm').map("
                               "n => [n.id(), [n.style('label'), n.classes()]]))")
        if journey["outcome"]["delivered"]:
            assert delivered == [dst]
            assert marks["destination"] == f"vm:{dst}"
            label, classes = labels[f"vm:{dst}"]
            assert "destination" in label and "destination" in classes
            # the way to it is drawn as the way, the copies as copies
            on = set(page.evaluate("window.tunnelnet.cy.elements('.onpath').map(e => e.id())"))
            assert {f"vm:{src}", f"vm:{dst}", f"vnic:{dst}"} <= on
        else:
            assert marks["destination"] is None
            assert "destination" not in labels[f"vm:{dst}"][0]
        assert set(marks["discarded"]) == {f"vm:{vm}" for vm in copies}
        for vm in copies:
            label, classes = labels[f"vm:{vm}"]
            assert "discarded" in label and "discarded" in classes and "onpath" not in classes
        # the side panel lists every end the JSON names, in its words
        shown = page.eval_on_selector_all("#ends li", "els => els.map(e => [e.dataset.what, "
                                          "e.dataset.vm])")
        assert shown == [[e["what"], e["vm"] or ""] for e in journey["outcome"]["ends"]]
        # the outcome stays in view however far the steps are scrolled
        page.eval_on_selector("#steps", "el => { el.scrollTop = el.scrollHeight; }")
        box = page.locator("#outcome").bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 820
        assert page.text_content("#summary") == journey["outcome"]["summary"]
        assert page.locator("#summary").is_visible()
        screenshot(page, f"sim-trace-{src}-{dst}-{proto}")


def test_a_stopped_agent_is_drawn_down_and_back_up(browser: Any, demo: SimLab) -> None:
    with open_page(browser, demo.url) as page:
        assert page.evaluate("window.tunnelnet.cy.getElementById('hv:hv1').hasClass('dead')") \
            is False
        demo.lab("stop", "agent-hv1")
        try:
            hv1 = next(h for h in demo.status()["hypervisors"] if h["name"] == "hv1")
            assert hv1["agent_alive"] is False  # what the lab itself says
            page.wait_for_function("window.tunnelnet.cy.getElementById('hv:hv1')"
                                   ".hasClass('dead')", timeout=10000)
            label = page.evaluate("window.tunnelnet.cy.getElementById('hv:hv1')"
                                  ".style('label')")
            assert "agent down" in label
            assert "2/3 hypervisors up" in page.text_content("#live")
            assert page.evaluate("window.tunnelnet.cy.getElementById('hv:hv2')"
                                 ".hasClass('dead')") is False
            screenshot(page, "sim-agent-hv1-stopped")
        finally:
            demo.lab("start", "agent-hv1")
        page.wait_for_function("!window.tunnelnet.cy.getElementById('hv:hv1').hasClass('dead')",
                               timeout=10000)


def test_the_flow_table_does_not_call_counters_that_never_move_live(
        browser: Any, demo: SimLab) -> None:
    demo.lab("ping", "red1", "red3")  # frames the simulation follows: no counter moves
    with open_page(browser, demo.url) as page:
        page.evaluate("() => { window.tunnelnet.cy.getElementById('br:hv1:br-tun')"
                      ".emit('tap'); }")
        page.wait_for_selector("#flows[data-bridge=br-tun]", timeout=10000)
        lines = page.eval_on_selector_all("#flows div", "els => els.map(e => e.textContent)")
        assert lines and all("n_packets=0," in line for line in lines)
        title = page.text_content("#flows-title") or ""
        assert "live" not in title.lower() and "stay at 0" in title


def test_a_lab_taken_down_is_a_banner_and_the_page_comes_back_with_it(
        browser: Any, demo: SimLab) -> None:
    # (last in this module: it takes the demo lab down and up again)
    with open_page(browser, demo.url) as page:
        assert page.locator("#banner").is_hidden()
        demo.lab("down")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{demo.url}/api/state", timeout=10)
        assert err.value.code == 503
        body = json.loads(err.value.read())
        assert body["lab_down"] is True and "lab" in body["detail"]
        page.wait_for_selector("#banner", state="visible", timeout=10000)
        banner = page.text_content("#banner") or ""
        assert body["detail"].split(":")[0] in banner and "down" in banner
        screenshot(page, "sim-lab-down")
        demo.lab("up", "--sim", str(demo.topology))
        page.wait_for_selector("#banner", state="hidden", timeout=15000)
        n = page.evaluate("window.tunnelnet.cy.nodes('.vm').length")
        assert n == len(demo.vms())


def test_a_tunnel_whose_bfd_session_is_down_is_drawn_as_down(browser: Any, demo: SimLab
                                                             ) -> None:
    # the simulated lab runs no BFD: the state document is given one down tunnel on its way
    # to the page, in the shape a real lab's switches give it (tests/netns/test_lab_bfd.py)
    marked: dict[str, str] = {}

    def one_down(route: Any) -> None:
        state = route.fetch().json()
        hv = next(h for h in state["hypervisors"] if h["tunnels"])
        tunnel = hv["tunnels"][0]
        tunnel.update(state="down", since_change_s=12.4,
                      diagnostic="Control Detection Time Expired")
        marked.update(host=hv["name"], peer=tunnel["remote_host"], type=tunnel["type"])
        route.fulfill(json=state)

    with open_page(browser, demo.url) as page:
        page.route("**/api/state", one_down)
        page.wait_for_function("window.tunnelnet.cy.edges('.tunnel.down').length > 0",
                               timeout=10000)
        edges = [e for e in drawing(page)["edges"] if "tunnel" in e["classes"]]
        down = [e for e in edges if "down" in e["classes"]]
        assert len(down) == 1
        assert {down[0]["source"], down[0]["target"]} == {f"br:{marked['host']}:br-tun",
                                                          f"br:{marked['peer']}:br-tun"}
        assert "DOWN 12 s" in down[0]["label"]
        colour = page.evaluate("window.tunnelnet.cy.edges('.tunnel.down')[0]"
                               ".style('line-color')")
        assert rgb(colour) == (211, 47, 47)
        screenshot(page, "sim-tunnel-down")
        page.unroute("**/api/state")
        page.wait_for_function("window.tunnelnet.cy.edges('.tunnel.down').length === 0",
                               timeout=10000)
