"""List queries as Neutron takes them: filters, `fields=`, sorting and pages.

`?name=a&name=b` keeps either; `?fixed_ips=ip_address=10.0.0.3` matches a port by address;
`?fields=id&fields=name` trims each item; `?sort_key=name&sort_dir=desc`; `?limit=N&marker=ID`
pages (the marker is the last id of the previous page). Unknown filter names are an error that
names them, never a silently empty or full answer (Neutron's filter validation); unknown names
in `fields=` are ignored, as Neutron ignores them (clients ask for attributes of extensions a
server may lack).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunnelnet.server.errors import BadRequest
from tunnelnet.store.base import Doc

PAGING = ("limit", "marker", "sort_key", "sort_dir", "page_reverse")
FIXED_IP_KEYS = ("ip_address", "subnet_id")


def _text(value: Any) -> str:
    # query strings carry text: booleans compare as true/false, null as an empty value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _matches_fixed_ips(doc: Doc, wanted: Sequence[str]) -> bool:
    """Neutron's `fixed_ips=ip_address=10.0.0.3` / `fixed_ips=subnet_id=X` filters."""
    for item in wanted:
        name, _, value = item.partition("=")
        if not any(_text(ip.get(name)) == value for ip in doc.get("fixed_ips", [])):
            return False
    return True


def apply_query(
    docs: Sequence[Doc],
    query: Mapping[str, Sequence[str]],
    resource: str,
) -> list[Doc]:
    """Filters (`field=value`, repeated = any of) and `fields=` selection, on public views."""
    fields = [f for value in query.get("fields", ()) for f in value.split(",") if f]
    filters = {k: v for k, v in query.items() if k not in ("fields", *PAGING)}
    out = []
    for doc in docs:
        ok = True
        for name, values in filters.items():
            if name == "fixed_ips":
                ok = _matches_fixed_ips(doc, values)
            elif name not in doc:
                ok = False
            else:
                text = _text(doc[name])
                ok = any(
                    text == v or (isinstance(doc[name], bool) and text == v.lower()) for v in values
                )
            if not ok:
                break
        if ok:
            out.append(doc)
    out = _page(_sort(out, query), query, resource)
    return [select(doc, fields) for doc in out] if fields else out


def _sort_value(value: Any) -> tuple[int, Any]:
    # None first, then values of one kind compare among themselves
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def _sort(docs: list[Doc], query: Mapping[str, Sequence[str]]) -> list[Doc]:
    keys = query.get("sort_key", ())
    if not keys:
        return docs  # creation order
    directions = list(query.get("sort_dir", ()))
    out = list(docs)
    # stable sorts from the last key to the first give a multi-key order
    for index in reversed(range(len(keys))):
        direction = directions[index] if index < len(directions) else "asc"
        out.sort(key=lambda d, k=keys[index]: _sort_value(d.get(k)),  # type: ignore[misc]
                 reverse=direction == "desc")  # fmt: skip
    return out


def _page(docs: list[Doc], query: Mapping[str, Sequence[str]], resource: str) -> list[Doc]:
    if "marker" in query:
        marker = query["marker"][-1]
        ids = [d.get("id") for d in docs]
        if marker not in ids:
            raise BadRequest(f"marker {marker} is not a {resource} in this list", "InvalidInput")
        docs = docs[ids.index(marker) + 1 :]
    if "limit" in query:
        docs = docs[: int(query["limit"][-1])]
    return docs


def select(doc: Doc, fields: Sequence[str]) -> Doc:
    return {k: doc[k] for k in fields if k in doc}


def check_query(query: Mapping[str, Sequence[str]], allowed: Sequence[str], resource: str) -> None:
    """Unknown filter names are an error naming them, not an empty (or full) answer."""
    bad = sorted(set(query) - {*allowed, "fields", *PAGING})
    if bad:
        raise BadRequest(f"unknown {resource} filter(s): {', '.join(bad)}", "InvalidInput")
    for value in query.get("limit", ()):
        if not value.isdigit() or int(value) < 1:
            raise BadRequest(f"limit {value!r} must be a positive integer", "InvalidInput")
    for name in query.get("sort_key", ()):
        if name not in allowed:
            raise BadRequest(f"unknown {resource} sort_key {name!r}", "InvalidInput")
    for value in query.get("sort_dir", ()):
        if value not in ("asc", "desc"):
            raise BadRequest(f"sort_dir {value!r} must be asc or desc", "InvalidInput")
    for value in query.get("fixed_ips", ()):
        name = value.partition("=")[0]
        if name not in FIXED_IP_KEYS:
            # e.g. ip_address_substr, which needs an extension tunnelnet does not have
            raise BadRequest(
                f"fixed_ips filter {name!r} is not supported (use ip_address or subnet_id)",
                "InvalidInput",
            )
    if "page_reverse" in query:
        raise BadRequest("page_reverse is not supported", "InvalidInput")
