"""A bad bfd column is refused with the key named and nothing made or changed: on add-port,
on set interface, on a port that is no tunnel, and from the command line before any request."""

from __future__ import annotations

import pytest

from support.vswitchd import recording_ports
from tunnelnet.cli.main import main
from tunnelnet.datapath.errors import DatapathError, PortError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard


@pytest.fixture
def board() -> Switchboard:
    board = Switchboard(EventLoop(), port_factory=recording_ports)
    board.add_bridge("br-tun")
    board.add_port("br-tun", "eth1", PortKind.SYSTEM)
    return board


def test_bfd_on_a_port_that_is_no_tunnel_is_refused(board: Switchboard) -> None:
    with pytest.raises(DatapathError, match="tunnel ports only"):
        board.add_port("br-tun", "eth2", PortKind.SYSTEM, bfd={"enable": "true"})
    assert "eth2" not in board.ports
    with pytest.raises(PortError, match="tunnel ports"):
        board.set_interface_bfd("eth1", {"enable": "true"})


def test_a_bad_column_refuses_the_tunnel_port_before_any_socket_is_opened(
        board: Switchboard) -> None:
    with pytest.raises(PortError, match="bfd:min_tx='fast'"):
        board.add_port("br-tun", "vxlan-x", PortKind.VXLAN,
                       options={"remote_ip": "127.0.0.2"},
                       bfd={"enable": "true", "min_tx": "fast"})
    with pytest.raises(PortError, match=r"unknown bfd key.*forwarding_if_rx"):
        board.add_port("br-tun", "vxlan-x", PortKind.VXLAN,
                       options={"remote_ip": "127.0.0.2"},
                       bfd={"enable": "true", "forwarding_if_rx": "true"})
    assert "vxlan-x" not in board.ports and not board.bfd.sessions()


@pytest.mark.parametrize(("args", "message"), [
    (["set", "bridge", "br-tun", "bfd:enable=true"], "a bridge takes other_config"),
    (["set", "interface", "vx", "options:key=5"], "give bfd:KEY=VALUE"),
    (["set", "interface", "vx", "bfd:enable"], "give bfd:KEY=VALUE"),
    (["clear", "interface", "vx", "options"], "only the bfd column"),
    (["add-port", "br-tun", "vx", "color:x=1"], "only options:K=V"),
])
def test_vsctl_refuses_what_it_cannot_say_before_asking_the_switch(
        args: list[str], message: str, tmp_path: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vsctl", "--rundir", str(tmp_path), *args]) != 0
    said = capsys.readouterr()
    assert message in said.err
    assert "Traceback" not in said.err + said.out
