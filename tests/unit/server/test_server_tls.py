"""HTTPS on the controller, judged from the attacker's side: certificates made by `openssl`,
a real `tunnelnet server` process, and clients that must refuse what they cannot trust.

- a client (library, CLI, agent) that trusts another CA refuses the controller, and says why;
- plain HTTP to the TLS port gets no HTTP answer, and the client says to use https://;
- no endpoint answers without a token but the ones that are public by design;
- plain HTTP is served beyond loopback only when asked for, and never sent there either.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from support.etcd import free_port
from support.tls import Pki, pki
from tunnelnet.client import Client, ClientError

__all__ = ["pki"]  # the session fixture, imported so pytest finds it here

# answered without a token on purpose (written out here, not read from the server's own list):
# version discovery and the extension list (keystoneauth discovers before it has a token; see
# server/app.py), and FastAPI's description of the API (the routes and their schemas, no data)
PUBLIC = {
    ("GET", "/"), ("GET", "/v2.0"), ("GET", "/v2.0/"), ("GET", "/v2.0/extensions"),
    ("GET", "/v2.0/extensions/{alias}"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
}  # fmt: skip


def _tls_env(pki: Pki) -> dict[str, str]:
    return {"TUNNELNET_TLS_CERT": str(pki.server.cert), "TUNNELNET_TLS_KEY": str(pki.server.key)}


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("tls-server")
    # from the config file here (the failover test gives them in the environment)
    config = directory / "server.toml"
    config.write_text(f'tls_cert = "{pki.server.cert}"\ntls_key = "{pki.server.key}"\n')
    with ServerProcess(directory / "db.sqlite", config=config, ca_file=pki.ca.cert) as proc:
        yield proc


def _cli(*args: str, env: dict[str, str] | None = None,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELNET_")}
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=timeout, env=full | (env or {}), check=False)


def test_the_controller_serves_https_to_a_client_trusting_its_ca(
    tls_server: ServerProcess,
) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    with tls_server.client() as admin:
        net = admin.create("network", name="over-tls")
        assert admin.show("network", net["id"])["name"] == "over-tls"
    # the CLI, with the CA from the environment and a controller list whose first is gone
    dead = f"https://127.0.0.1:{free_port()}"
    done = _cli("network", "list", "-f", "value", "-c", "name",
                env={"TUNNELNET_URL": f"{dead},{tls_server.url}", "TUNNELNET_TOKEN": ADMIN_TOKEN,
                     "TUNNELNET_CA": str(tls_server.ca_file)})
    assert done.returncode == 0, done.stderr
    assert "over-tls" in done.stdout.split()


def test_a_client_trusting_another_ca_is_refused_and_says_why(
    tls_server: ServerProcess, pki: Pki
) -> None:
    with Client(tls_server.url, ADMIN_TOKEN, ca_file=str(pki.other_ca.cert)) as misled, \
            pytest.raises(ClientError) as refused:
        misled.list("network")
    message = str(refused.value)
    assert "certificate is not trusted" in message and str(pki.other_ca.cert) in message
    done = _cli("network", "list", "--url", tls_server.url, "--token", ADMIN_TOKEN,
                "--ca-file", str(pki.other_ca.cert))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "certificate is not trusted" in done.stderr
    # OpenSSL's own reason (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY), kept
    assert "unable to get local issuer certificate" in done.stderr


def test_an_agent_trusting_another_ca_registers_nothing_and_logs_why(
    tls_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelnet", "agent", "--host", "intruder-hv",
         "--tunnel-ip", "192.0.2.66", "--controller", tls_server.url,
         "--ca-file", str(pki.other_ca.cert), "--rundir", str(tmp_path / "run"),
         "--log-file", str(log)],
        env={**os.environ, "TUNNELNET_TOKEN": ADMIN_TOKEN}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while "no controller answers" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the agent never said why it is refused"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log.read_text()
    assert "certificate is not trusted" in text and "Traceback" not in text
    assert text.count("no controller answers") == 1  # said once, not per retry
    with tls_server.client() as admin:
        assert [a for a in admin.list("agent") if a["host"] == "intruder-hv"] == []


def test_plain_http_to_the_tls_port_gets_no_http_answer(tls_server: ServerProcess) -> None:
    address = urlsplit(tls_server.url)
    assert address.hostname and address.port
    request = (b"GET /v2.0/networks HTTP/1.1\r\nHost: controller\r\n"
               b"X-Auth-Token: " + ADMIN_TOKEN.encode() + b"\r\n\r\n")
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/")  # at most a TLS alert (content type 21), then close
    assert answer == b"" or answer[0] == 21
    plain = tls_server.url.replace("https://", "http://")
    with Client(plain, ADMIN_TOKEN) as confused, pytest.raises(ClientError) as refused:
        confused.list("network")
    assert "use an https:// URL" in str(refused.value)


def _sample(path: str) -> str:
    return path.replace("{", "").replace("}", "-x")  # any id: the token is checked first


def test_no_endpoint_answers_without_a_token(tls_server: ServerProcess) -> None:
    verify = ssl.create_default_context(cafile=str(tls_server.ca_file))
    with httpx.Client(base_url=tls_server.url, verify=verify, timeout=30) as http:
        spec = http.get("/openapi.json").json()
        routes = {(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item}
        assert ("POST", "/v2.0/ports") in routes and ("GET", "/v2.0/watch") in routes
        answered = []
        for method, path in sorted(routes - PUBLIC):
            body = {} if method in ("POST", "PUT") else None  # a body that fails validation
            response = http.request(method, _sample(path), json=body)
            if response.status_code != 401:
                answered.append((method, path, response.status_code))
            # a wrong token: refused too; only a body's shape is judged before the token's
            # validity (FastAPI validates it first), so a malformed one may get its 400
            response = http.request(method, _sample(path), json=body,
                                    headers={"X-Auth-Token": "not-a-token"})
            if response.status_code != 401 and not (body is not None
                                                    and response.status_code == 400):
                answered.append((method, path, response.status_code))
            if body is not None:
                response = http.request(method, _sample(path),
                                        headers={"X-Auth-Token": "not-a-token"})
                if response.status_code not in (400, 401):
                    answered.append((method, path, response.status_code))
        assert answered == [], answered


def test_plain_http_beyond_loopback_needs_insecure_http(tmp_path: Path) -> None:
    env = {"TUNNELNET_ADMIN_TOKEN": "adm"}
    done = _cli("server", "--db", str(tmp_path / "db"), "--listen", "0.0.0.0:0", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "refusing to serve plain HTTP on 0.0.0.0" in done.stderr
    assert not (tmp_path / "db").exists()  # refused before anything was made
    # the client side: a token is never sent in clear to another host unless asked for
    with pytest.raises(ClientError, match="plain HTTP to another host"):
        Client("https://127.0.0.1:1,http://192.0.2.1:9696", "t")
    Client("http://192.0.2.1:9696", "t", insecure_http=True).close()


def test_a_certificate_without_its_key_or_a_wrong_key_is_one_clear_line(
    pki: Pki, tmp_path: Path
) -> None:
    env = {"TUNNELNET_ADMIN_TOKEN": "adm"}
    base = ("server", "--db", str(tmp_path / "db"), "--listen", "127.0.0.1:0")
    done = _cli(*base, "--tls-cert", str(pki.server.cert), env=env)
    assert done.returncode == 1 and "needs both a certificate and its key" in done.stderr
    done = _cli(*base, "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.ca.key),
                env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot be used together" in done.stderr


def test_the_unix_socket_stays_plain_http_beside_tls(pki: Pki, tmp_path: Path) -> None:
    sock = tmp_path / "server.sock"
    env = {**_tls_env(pki), "TUNNELNET_ADMIN_TOKEN": "adm"}
    full = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELNET_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelnet", "server", "--db", str(tmp_path / "db"),
         "--listen", "127.0.0.1:0", "--unix", str(sock)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on https://127.0.0.1:" in line and f"unix:{sock}" in line
        url = line.split("listening on ")[1].split()[0]
        with Client(f"unix:{sock}", "adm") as local, \
                Client(url, "adm", ca_file=str(pki.ca.cert)) as remote:
            local.create("network", name="via-socket")
            assert [n["name"] for n in remote.list("network")] == ["via-socket"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
