"""Schemathesis against the server's own OpenAPI schema, over real HTTP.

Schemathesis reads /openapi.json and generates requests for every operation from it; the
property is ours: never a 5xx, every error in our JSON shape. The streaming watch and the
long poll are left out (open-ended by design; they have their own tests). Examples per
operation are bounded so the whole run stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from support.controller import ADMIN_TOKEN, ServerProcess

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = 10


def _check(case: Any) -> None:
    # the generated X-Auth-Token (if any) is replaced: unauthenticated calls prove little
    response = case.call(headers={"X-Auth-Token": ADMIN_TOKEN}, timeout=10)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"NeutronError"}, body
        assert isinstance(body["NeutronError"]["type"], str) and body["NeutronError"]["type"]
        assert isinstance(body["NeutronError"]["message"], str) and body["NeutronError"]["message"]


def test_no_request_generated_from_the_openapi_schema_breaks_the_contract(
    server: ServerProcess,
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [
        result.ok()
        for result in schema.exclude(path_regex="/v2.0/(watch|events)").get_all_operations()
    ]
    labels = {op.label for op in operations}
    assert {"POST /v2.0/networks", "PUT /v2.0/ports/{item_id}", "POST /v2.0/tokens"} <= labels
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            _check(case)

        run()
