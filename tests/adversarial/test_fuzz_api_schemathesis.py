"""The REST API under schemathesis's state machine, against a real controller process:
sequences of calls that follow the links schemathesis infers from /openapi.json (a created
network's id into POST /v2.0/subnets and /v2.0/ports, a port's into PUT and DELETE, ...), so
requests reach objects that exist, not only random ids. The contract: never a 5xx, every
refusal in Neutron's error shape with a type and a message, and the controller still serving
afterwards. CI-sized; `python -m bench.fuzz` runs many more scenarios (tests/support/api_fuzz.py
holds both). The per-operation stateless run is tests/unit/server/test_server_api_schemathesis.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.api_fuzz import Tally, stateful
from support.controller import ServerProcess

pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("st-schemathesis")
    with ServerProcess(directory / "state.db") as proc:
        yield proc


def test_stateful_sequences_from_the_schema_never_break_the_contract(
        controller: ServerProcess) -> None:
    tally = Tally()
    stateful(controller.url, scenarios=8, steps=6, tally=tally)
    assert tally.findings == []
    # it reached past the refusals: objects were made and then used
    assert tally.cases >= 16 and tally.by_status.get(201, 0) >= 1, tally.by_status
    with controller.client() as admin:
        assert isinstance(admin.list("network"), list)  # still serving
