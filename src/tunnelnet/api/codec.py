"""JSON on the wire, at both ends: orjson, several times faster than the standard library.

At a thousand agents the agents spent a quarter of their CPU decoding the controller's answers
(network listings, long-poll events) and the controller much of its own encoding them; orjson
does both in C. Its output is compact UTF-8 JSON, as the controller sent before
(`separators=(",", ":")`, `ensure_ascii=False`): the same JSON values, so any JSON client reads
it unchanged.

What orjson refuses to encode (an integer beyond 64 bits, a key that is not a string) goes to
the standard library instead, so nothing the controller could answer before fails now. Two
differences remain: a NaN or infinite float is encoded as `null` (the standard library, as
the controller called it, refused it; the API refuses NaN in requests, so none is stored),
and an integer beyond 64 bits is decoded as a float (only an agent's free-form
`configurations` could carry one; nothing the agent plans from). Decoding errors are
`json.JSONDecodeError` as before (orjson's is a subclass), so every `except ValueError` still
catches them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = json.JSONDecodeError


def dumps(obj: Any) -> bytes:
    """`obj` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """A JSON document; raises JSONDecodeError (a ValueError) when it is not one."""
    return orjson.loads(data)
