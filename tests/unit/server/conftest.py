"""Fixtures: a real controller process on 127.0.0.1 (one per module), clients per role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.controller import AGENT_TOKEN, ServerProcess
from tunnelnet.client import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("controller")
    with ServerProcess(directory / "state.db") as proc:
        yield proc


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def agent(server: ServerProcess) -> Iterator[Client]:
    with server.client(AGENT_TOKEN) as client:
        yield client


def _project_client(server: ServerProcess, admin: Client, name: str) -> Client:
    token = admin.create_token(project=name)
    return Client(server.url, token["id"])


@pytest.fixture
def tenant_a(server: ServerProcess, admin: Client) -> Iterator[Client]:
    with _project_client(server, admin, f"a-{uuid.uuid4().hex[:8]}") as client:
        yield client


@pytest.fixture
def tenant_b(server: ServerProcess, admin: Client) -> Iterator[Client]:
    with _project_client(server, admin, f"b-{uuid.uuid4().hex[:8]}") as client:
        yield client


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
