"""Client and server meet only in the API contract (`tunnelnet.api`), never in each other.

The imports are read from the source (every `import`, also inside functions and under
TYPE_CHECKING) and followed through tunnelnet's own modules, so a detour through a third
package counts too: the client must run without the server's code and its dependencies, and
the server must never depend on how one client happens to work.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import tunnelnet

SRC = Path(tunnelnet.__file__).resolve().parent.parent


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(name: str, path: Path) -> set[str]:
    """The tunnelnet modules `path` (module `name`) imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from pkg import mod` imports the module pkg.mod when there is one
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if _module_file(f"{module}.{alias.name}"))  # fmt: skip
    return {m for m in found if m.split(".")[0] == "tunnelnet" and _module_file(m)}


@cache
def _reached(name: str) -> frozenset[str]:
    """Every tunnelnet module importing `name` loads (its packages' __init__ too)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        path = _module_file(module)
        if path is not None:
            todo.extend(_imported(module, path))
    return frozenset(seen)


def _modules(package: str) -> list[str]:
    root = SRC / "tunnelnet" / package
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for module in _modules(package):
        hits = sorted(m for m in _reached(module)
                      if any(m == f or m.startswith(f + ".") for f in forbidden))  # fmt: skip
        if hits:
            bad[module] = hits
    return bad


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("client", ("tunnelnet.server",)),
        ("server", ("tunnelnet.client",)),
        ("api", ("tunnelnet.server", "tunnelnet.client", "tunnelnet.agent")),
    ],
)
def test_package_does_not_import(package: str, forbidden: tuple[str, ...]) -> None:
    assert _modules(package), f"no modules found under tunnelnet.{package}"
    assert _offenders(package, forbidden) == {}


def test_the_walk_sees_imports_through_other_modules() -> None:
    # the agent reaches the client through its HTTP controller, and the client the contract
    reached = _reached("tunnelnet.agent.service")
    assert "tunnelnet.api.errors" in reached
    assert "tunnelnet.client.http" in _reached("tunnelnet.agent.http_controller")
    assert "tunnelnet.api.events" in _reached("tunnelnet.client")
