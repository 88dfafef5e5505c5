"""The JSON API when no lab answers: a 503 that says so, on every endpoint, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunnelnet.trace.open import open_lab
from tunnelnet.web.app import create_app
from tunnelnet.web.status import DirectoryStatus


@pytest.mark.parametrize("path,params", [
    ("/api/state", {}),
    ("/api/trace", {"src": "red1", "dst": "red3"}),
    ("/api/flows", {"host": "hv1", "bridge": "br-tun"}),
])
def test_no_lab_is_a_503_whose_json_says_the_lab_is_down(tmp_path: Path, path: str,
                                                        params: dict[str, str]) -> None:
    client = TestClient(create_app(lambda: open_lab(tmp_path), DirectoryStatus(tmp_path)))
    r = client.get(path, params=params)
    assert r.status_code == 503
    body = r.json()
    assert body["lab_down"] is True
    assert "no lab is up" in body["detail"] and str(tmp_path) in body["detail"]


def test_a_simulated_lab_whose_server_is_gone_is_a_503(tmp_path: Path) -> None:
    # a record that says a simulated lab is up, with nobody answering on its socket
    (tmp_path / "state.json").write_text('{"sim": true, "hypervisors": {}, "vms": {}}')
    client = TestClient(create_app(lambda: open_lab(tmp_path), DirectoryStatus(tmp_path)))
    r = client.get("/api/state")
    assert r.status_code == 503 and r.json()["lab_down"] is True
    assert "does not answer" in r.json()["detail"]
    # the page itself is still served, to show the banner
    assert client.get("/").status_code == 200
