"""The flow snapshot's flows kept parsed, so that a restart installs them without the text parser.

Parsing is most of a restart's cost: about 0.2 ms a flow, 0.6-1 s for the 3,000 flows of a
hypervisor with 200 ports, during which nothing is forwarded. flows.json stays the snapshot
(readable, and what flow_snapshot.plan judges); beside it RUNDIR/flows.parsed holds, per
bridge, what the parser makes of each of its lines (table, priority, match, actions,
cookie; the snapshot has no flow with timeouts), in the same order, with a digest of the
lines it was made from.

A bridge's parsed flows are used only for exactly the lines they were made from (the
digest): otherwise (a crash between the two files' writes, a snapshot edited by hand) its
lines are parsed as before. What a line means is fixed by its text and by the code that
reads it: the file carries a fingerprint of the switch's sources and of the Python that
wrote it, and one of another fingerprint is not read at all. It is read back by an
unpickler that builds only the switch's own value classes (match, actions, learn specs),
never anything that runs code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import tunnelnet.switch
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.flow_parser import FlowCommand, FlowSpec
from tunnelnet.switch.match import Match

log = logging.getLogger(__name__)

PARSED_NAME: Final = "flows.parsed"
FORMAT: Final = 1
# the modules whose classes a parsed flow is made of: nothing else may be unpickled
_VALUE_MODULES: Final = frozenset({"tunnelnet.switch.actions", "tunnelnet.switch.learn",
                                   "tunnelnet.switch.match", "tunnelnet.switch.nxm"})


@cache
def fingerprint() -> str:
    """The switch's sources and the Python version: what fixes what a line means."""
    digest = hashlib.sha256(f"{FORMAT} {sys.version_info[:2]}".encode())
    package = Path(tunnelnet.switch.__file__).parent
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def lines_digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def encode(bridges: Mapping[str, Sequence[tuple[str, FlowEntry]]]) -> bytes:
    """Each bridge's (line, entry) pairs as the file holds them."""
    seen: dict[object, Any] = {}  # equal actions pickled once (pickle shares one object)
    body = {name: (lines_digest([line for line, _ in pairs]),
                   [(e.table, e.priority, e.match, seen.setdefault(e.actions, e.actions),
                     e.cookie) for _, e in pairs])
            for name, pairs in bridges.items()}
    return pickle.dumps({"format": FORMAT, "fingerprint": fingerprint(), "bridges": body},
                        protocol=pickle.HIGHEST_PROTOCOL)


def save(path: Path, bridges: Mapping[str, Sequence[tuple[str, FlowEntry]]]) -> None:
    """Atomically, as persist.write_json_atomically does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(encode(bridges))
    os.replace(tmp, path)


class _ValuesOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _VALUE_MODULES:
            found = getattr(sys.modules.get(module), name, None)
            if isinstance(found, type) and dataclasses.is_dataclass(found):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a part of a parsed flow")


def _spec(flow: Any) -> FlowSpec:
    """As parse_flow gives it for the line ``flow`` was made from."""
    table, priority, match, actions, cookie = flow
    if not (isinstance(table, int) and isinstance(priority, int) and isinstance(match, Match)
            and isinstance(actions, tuple) and isinstance(cookie, int)):
        raise TypeError(f"not a parsed flow: {flow!r:.200}")
    return FlowSpec(command=FlowCommand.ADD, strict=False, table=table, priority=priority,
                    match=match, actions=actions, new_cookie=cookie, cookie=0, cookie_mask=0,
                    idle_timeout=0, hard_timeout=0, out_port=None)


def decode(data: bytes, texts: Mapping[str, Sequence[str]]) -> dict[str, dict[str, FlowSpec]]:
    """Bridge -> line -> its flow spec, for each bridge of ``texts`` (the snapshot's lines)
    whose lines ``data`` was made from; empty, logged, when ``data`` is of another format or
    fingerprint, or damaged."""
    try:
        document = _ValuesOnly(io.BytesIO(data)).load()
        if not isinstance(document, dict) or document.get("format") != FORMAT \
                or document.get("fingerprint") != fingerprint():
            log.info("parsed flows of another version of tunnelnet: parsing the text")
            return {}
        known: dict[str, dict[str, FlowSpec]] = {}
        for name, (digest, flows) in document["bridges"].items():
            lines = texts.get(name)
            if lines is None or digest != lines_digest(lines) or len(flows) != len(lines):
                log.info("parsed flows of %s are not of its snapshot: parsing the text", name)
                continue
            known[name] = {line: _spec(flow) for line, flow in zip(lines, flows, strict=True)}
        return known
    except Exception as exc:  # any damage at all: the text is parsed instead
        log.warning("parsed flows unusable (%s): parsing the snapshot's text", exc)
        return {}


def load(path: Path, texts: Mapping[str, Sequence[str]]) -> dict[str, dict[str, FlowSpec]]:
    """``decode`` of what ``path`` holds; empty when it is missing or unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("parsed flows %s unreadable (%s): parsing the text", path, exc)
        return {}
    return decode(data, texts)
