"""Where the kernel fast path cannot run, the reason is one clear line and nothing is left.

The refusal by the kernel itself (EPERM for a user without CAP_BPF) is tested for real in
tests/netns/test_kernel_fastpath_refused.py; here the causes a user can meet without root.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tunnelnet.datapath import kernel_fastpath, kernel_loader
from tunnelnet.datapath.kernel_fastpath import KernelFastPath, load_or_explain
from tunnelnet.datapath.kernel_loader import BpfObject, KernelFastPathUnavailable, LibBpf


def test_missing_object_file_says_it_is_built_by_make_not_compiled_here(tmp_path: Path) -> None:
    try:
        libbpf = LibBpf.open()
    except KernelFastPathUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.raises(KernelFastPathUnavailable, match="make bpf") as caught:
        BpfObject.load(libbpf, tmp_path / "replay.bpf.o")
    assert caught.value.errno == errno.ENOENT


def test_a_file_that_is_no_bpf_object_is_refused(tmp_path: Path) -> None:
    try:
        libbpf = LibBpf.open()
    except KernelFastPathUnavailable as exc:
        pytest.skip(str(exc))
    junk = tmp_path / "junk.bpf.o"
    junk.write_bytes(b"not an ELF file")
    with pytest.raises(KernelFastPathUnavailable, match="cannot open"):
        BpfObject.load(libbpf, junk)


def test_missing_libbpf_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_loader, "LIBBPF_SONAME", "libbpf-absent.so.99")
    with pytest.raises(KernelFastPathUnavailable, match="libbpf1"):
        LibBpf.open()


def test_load_or_explain_gives_the_python_path_and_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(cls: type[KernelFastPath], path: Path = kernel_fastpath.REPLAY_OBJECT
                ) -> KernelFastPath:
        raise KernelFastPathUnavailable("the kernel refused replay.bpf.o: Operation not "
                                        "permitted", errno.EPERM)
    monkeypatch.setattr(KernelFastPath, "load", classmethod(refused))
    fastpath, reason = load_or_explain()
    assert fastpath is None
    assert reason == "off: the kernel refused replay.bpf.o: Operation not permitted"


def test_fastpath_check_prints_one_line_and_exits_1_when_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from tunnelnet.cli import fastpath as cli_fastpath

    monkeypatch.setattr(cli_fastpath, "load_or_explain",
                        lambda: (None, "off: libbpf.so.1 cannot be opened; install libbpf1"))
    result = CliRunner().invoke(cli_fastpath.cli, ["check"])
    assert result.exit_code == 1
    assert result.output == ("kernel fast path: off: libbpf.so.1 cannot be opened; "
                             "install libbpf1\n")
