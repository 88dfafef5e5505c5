"""The lab group picks one Lab (namespaces or simulated) once, and the layers stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunnelnet.cli.lab import LabChoice
from tunnelnet.lab.interface import AddedVm, LabUnsupported
from tunnelnet.lab.namespaces import NamespaceLab
from tunnelnet.lab.simulated import SimulatedLab
from tunnelnet.lab.state import LabState, StateFile

SRC = Path(__file__).resolve().parents[3] / "src" / "tunnelnet"


def _quiet(_message: str) -> None:
    pass


def _record(directory: Path, *, sim: bool) -> None:
    StateFile(directory).save(LabState(topology="t.toml", sim=sim))


def test_no_lab_up_means_the_lab_of_namespaces(tmp_path: Path) -> None:
    lab = LabChoice(tmp_path).lab()
    assert isinstance(lab, NamespaceLab) and lab.directory == tmp_path


def test_a_recorded_simulation_is_talked_to_as_a_simulated_lab(tmp_path: Path) -> None:
    _record(tmp_path, sim=True)
    lab = LabChoice(tmp_path).lab()
    assert isinstance(lab, SimulatedLab) and lab.directory == tmp_path
    _record(tmp_path, sim=False)
    assert isinstance(LabChoice(tmp_path).lab(), NamespaceLab)


def test_up_says_which_and_the_choice_is_made_once(tmp_path: Path) -> None:
    choice = LabChoice(tmp_path)
    assert isinstance(choice.lab(sim=True), SimulatedLab)
    _record(tmp_path, sim=False)  # what is up later does not change this invocation's lab
    assert isinstance(choice.lab(), SimulatedLab)
    assert isinstance(LabChoice(tmp_path).lab(sim=False), NamespaceLab)


def test_commands_without_meaning_for_a_kind_of_lab_say_so(tmp_path: Path) -> None:
    real = NamespaceLab(tmp_path, _quiet, _quiet)
    with pytest.raises(LabUnsupported, match="no simulated lab is up"):
        real.flows("hv1", "br-tun")
    sim = SimulatedLab(tmp_path, _quiet, _quiet)
    with pytest.raises(LabUnsupported, match="no VM processes"):
        sim.exec("red1", ["true"])


def test_an_added_vm_is_described_with_its_port_status_when_known() -> None:
    vm = AddedVm("red4", "10.0.0.14", "fa:16:3e:00:00:01", "hv3", "red", "red-net")
    assert vm.describe() == "red4: 10.0.0.14 fa:16:3e:00:00:01 on hv3 (red/red-net)"
    active = AddedVm("red4", "10.0.0.14", "fa:16:3e:00:00:01", "hv3", "red", "red-net",
                     "ACTIVE")
    assert active.describe().endswith("(red/red-net), port ACTIVE")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _reaches(imports: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in imports)


def test_the_crossing_module_sits_below_the_walkers_that_use_it() -> None:
    imports = _imports(SRC / "switch" / "crossing.py")
    for above in ("tunnelnet.datapath", "tunnelnet.lab", "tunnelnet.trace"):
        assert not _reaches(imports, above), above


# The trace's walker: pure (it asks a LabView), below the lab, which walks with it (the
# simulated lab's ping and verify); the rest of tunnelnet.trace reads labs and sits above.
WALKER = frozenset(f"tunnelnet.trace.{m}" for m in (
    "journey", "learning", "model", "probe", "flowtext", "explain", "view", "render",
    "errors"))


def _trace_modules(imports: set[str]) -> set[str]:
    """The tunnelnet.trace modules among ``imports`` (``from tunnelnet.trace import x``
    names module x)."""
    return {m if m.count(".") == 2 else m.rsplit(".", 1)[0] if m.count(".") > 2 else m
            for m in imports if m.startswith("tunnelnet.trace.")}


def test_the_lab_layer_imports_only_the_trace_s_walker_and_never_the_command_line() -> None:
    for path in sorted((SRC / "lab").glob("*.py")):
        imports = _imports(path)
        assert _trace_modules(imports) <= WALKER, path.name
        assert not _reaches(imports, "tunnelnet.cli"), path.name


def test_the_walker_reads_no_lab_and_no_lab_reader() -> None:
    for module in sorted(WALKER):
        imports = _imports(SRC / "trace" / f"{module.rsplit('.', 1)[1]}.py")
        assert {m for m in imports if _reaches({m}, "tunnelnet.lab")} <= \
            {"tunnelnet.lab", "tunnelnet.lab.names"}, module  # bridge names, a leaf module
        assert _trace_modules(imports) <= WALKER, module


def test_the_trace_reaches_a_sim_server_through_the_wire_module_only() -> None:
    assert not _reaches(_imports(SRC / "trace" / "sim_remote.py"), "tunnelnet.lab.sim_server")
