"""Schemathesis against a real controller, stateless and stateful, with our contract as the
check: never a 5xx, every refusal in Neutron's error shape with a type and a message. Shared by
tests/adversarial/test_fuzz_api_schemathesis.py (bounded) and bench/fuzz.py (more cases).

The stateful run is schemathesis's state machine over the links it infers from
/openapi.json (a created network's id fed to POST /v2.0/subnets, a port's to PUT and DELETE,
...), so sequences reach objects that exist, not only random ids. The streaming watch and the
long poll are left out: open-ended by design, they have their own tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition

from support.controller import ADMIN_TOKEN

EXCLUDED = "/v2.0/(watch|events)"
_CHUNK = 10  # state-machine scenarios per hypothesis run (see stateful)


@dataclass
class Tally:
    """What a run sent and what broke the contract (method, path, status, body)."""

    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    chunks_cut: int = 0  # stateful runs hypothesis stopped early (see stateful)

    def judge(self, case: Any, response: Any) -> None:
        self.cases += 1
        status = response.status_code
        self.by_status[status] = self.by_status.get(status, 0) + 1
        problem = _problem(response)
        if problem is not None:
            self.findings.append(f"{case.method} {case.formatted_path} -> {status}: {problem}")


def _problem(response: Any) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"server error: {response.text[:300]}"
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"error body is not JSON: {response.text[:300]!r}"
    error = body.get("NeutronError") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"NeutronError"} or not isinstance(
            error, dict):
        return f"error body is not {{'NeutronError': ...}}: {str(body)[:300]}"
    if not (isinstance(error.get("type"), str) and error["type"]
            and isinstance(error.get("message"), str) and error["message"]):
        return f"error without a type and a message: {error}"
    return None


def _schema(url: str) -> Any:
    import schemathesis

    return schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(path_regex=EXCLUDED)


def _headers(case: Any) -> dict[str, Any]:
    # the generated X-Auth-Token (if any) is replaced: unauthenticated calls prove little
    return {"headers": {"X-Auth-Token": ADMIN_TOKEN}, "timeout": 10}


def stateful(url: str, scenarios: int, steps: int, tally: Tally) -> None:
    """``scenarios`` sequences of up to ``steps`` calls each, following the inferred links."""
    workflow = _schema(url).as_state_machine()

    class Checked(workflow):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return _headers(case)

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            tally.judge(case, response)

    # The links feed each call with what earlier responses said, so when hypothesis meets a
    # prefix of choices again the draws that follow can differ, and it stops the whole run
    # with FlakyStrategyDefinition (a known limit of schemathesis's state machine; seen after
    # 540 of bench.fuzz's requests). The scenarios run in chunks, and a chunk cut short so is
    # counted, not taken as the API's fault: every response was judged as it came, and our
    # check raises nothing for hypothesis to shrink (generation only).
    remaining = scenarios
    while remaining > 0:
        chunk = min(remaining, _CHUNK)
        remaining -= chunk
        try:
            Checked.run(settings=settings(max_examples=chunk, stateful_step_count=steps,
                                          deadline=None, database=None,
                                          phases=[Phase.generate],
                                          suppress_health_check=list(HealthCheck)))
        except FlakyStrategyDefinition:
            tally.chunks_cut += 1


def stateless(url: str, per_operation: int, tally: Tally) -> int:
    """``per_operation`` generated requests for every operation; returns the operations."""
    operations = [result.ok() for result in _schema(url).get_all_operations()]
    for operation in operations:

        @settings(max_examples=per_operation, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            tally.judge(case, case.call(**_headers(case)))

        run()
    return len(operations)
