"""A hostile client on vswitchd's control socket: random bytes, JSON of every shape, and
requests of every operation with arguments of random names, types and values (port types,
options, flow texts among them). The daemon - a real process in a namespace of the test's
own - must answer every line with a well-formed reply or error and keep serving; it must
never die, hang or leave a client unanswered."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.netns import lab
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import socket_path

pytestmark = pytest.mark.netns

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=8)
# values close to what each argument wants, so requests get past type checks into the daemon
_near = st.sampled_from(["br0", "br-int", "p1", "", "system", "internal", "patch", "vxlan",
                         "gre", "geneve", "secure", "standalone", "actions=drop",
                         "priority=5,in_port=1 actions=output:2", "table=300 actions=drop",
                         "in_port=1", "actions=learn(table=20,NXM_OF_ETH_SRC[])",
                         "actions=resubmit(,0)", "dl_vlan=4096 actions=drop", "x" * 300])
_options = st.dictionaries(st.sampled_from(["remote_ip", "local_ip", "key", "peer",
                                            "dst_port", "bfd:enable", "csum", "tos", "?"]),
                           st.sampled_from(["192.0.2.2", "flow", "0", "-1", "br0", "true",
                                            "::1", "999999999999", ""]), max_size=3)


@st.composite
def _request_line(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["bytes", "json", "request", "request"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ") + b"\n"
    if shape == "json":
        return json.dumps(draw(_json)).encode() + b"\n"
    cls = draw(st.sampled_from(sorted(m.REQUESTS.values(), key=lambda c: c.OP)))
    args: dict[str, object] = {}
    for fld in dataclasses.fields(cls):
        if draw(st.integers(0, 9)) == 0:
            continue  # leave it out
        args[fld.name] = draw(_options if fld.name in ("options", "external_ids")
                              else st.lists(_near, max_size=3) if fld.name == "flows"
                              else _near | st.integers(-1, 70000) | st.booleans() | _json)
    if draw(st.booleans()):
        args[draw(st.text(max_size=6))] = draw(_json)
    body = {"v": draw(st.sampled_from([1, 1, 1, 2, "1"])), "id": draw(st.integers(0, 2**31)),
            "op": cls.OP, "args": args}
    return json.dumps(body).encode() + b"\n"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Vswitchd]:
    with lab() as made:
        ns = made.netns("fuzz")
        with Vswitchd(ns) as switch:
            yield switch
            assert switch.proc is not None and switch.proc.poll() is None, "vswitchd died"


_MARK = 4_242_424_242  # the id of the ping sent after each fuzzed line


def _ask(path: Path, line: bytes) -> list[bytes]:
    """Sends the line, then a ping; the answers that came before the ping's."""
    ping = m.encode_request(m.Ping(), _MARK)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line + ping)
        buffer = b""
        answers: list[bytes] = []
        while True:
            while b"\n" not in buffer:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    raise AssertionError(f"no answer in 10 s after {line[:300]!r}") from None
                assert chunk, f"the daemon hung up after {line[:300]!r}"
                buffer += chunk
            answer, buffer = buffer.split(b"\n", 1)
            if m.decode_response(answer).id == _MARK and b'"ok":true' in answer:
                return answers
            answers.append(answer)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(line=_request_line())
def test_every_line_gets_a_well_formed_answer_and_the_daemon_keeps_serving(
        daemon: Vswitchd, line: bytes) -> None:
    answers = _ask(socket_path(daemon.rundir), line)
    # a blank line is no request (skipped, as a keep-alive); anything else gets one answer
    assert len(answers) == (0 if not line.strip() else 1), (line, answers)
    for raw in answers:
        answer = m.decode_response(raw)
        if isinstance(answer, m.ErrorReply):
            assert answer.kind and answer.message
    assert daemon.call(m.Ping()) is not None  # still serving, on a fresh connection
