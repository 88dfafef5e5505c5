"""The wire's JSON codec (api/codec.py, orjson) judged by the standard library's json: what
one writes the other reads as the same value, in both directions, and the cases orjson alone
would refuse still encode as the standard library does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelnet.api import WatchEvent, codec

# JSON values as the controller holds them: string keys, 64-bit integers, finite floats
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30)


@given(_values)
def test_the_standard_library_reads_what_the_codec_writes(value: Any) -> None:
    assert json.loads(codec.dumps(value)) == value


@given(_values)
def test_the_codec_reads_what_the_standard_library_writes(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=2)):
        assert codec.loads(text.encode()) == value


def test_non_ascii_leaves_as_utf8_in_one_compact_line() -> None:
    doc = {"name": "réseau 網絡 🚀", "a\nb": ["x\u2028y"], "n": 1}
    encoded = codec.dumps(doc)
    assert encoded == json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert b"\n" not in encoded  # one watch line per record (NDJSON)


@pytest.mark.parametrize("value", [{"big": 2**70}, {"neg": -(2**64)}, {1: "int key"},
                                   {"nested": [{2: [3**50]}]}])
def test_what_orjson_refuses_encodes_as_the_standard_library_does(value: Any) -> None:
    assert codec.dumps(value) == json.dumps(value, ensure_ascii=False,
                                            separators=(",", ":")).encode()


def test_a_nan_still_refused_where_only_the_fallback_sees_it() -> None:
    # a NaN beside a value orjson refuses: the standard library judges the whole document
    with pytest.raises(ValueError):
        codec.dumps({"x": math.nan, "y": 2**70})


@pytest.mark.parametrize("text", [b"", b"not json", b"{\"a\":", b"<html>502</html>", b"NaN"])
def test_not_json_is_the_standard_librarys_decode_error(text: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        codec.loads(text)


def test_a_watch_line_reads_back_as_the_event_it_was() -> None:
    event = WatchEvent("event", 42, "port", "update", {"id": "p1", "name": "ünïcode"})
    line = event.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"v": 1, "type": "event", "revision": 42, "resource": "port",
                                "action": "update", "object": {"id": "p1", "name": "ünïcode"}}
    assert WatchEvent.decode(line) == event
