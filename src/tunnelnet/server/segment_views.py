"""`/v2.0/segments`: each network's segment as Neutron's segment extension shows it.

tunnelnet keeps one segment per network, in the network's provider attributes, so segments
are views of networks, read-only. A segment's id is derived from its network's id (UUID 5),
so it is stable across restarts and needs no storage or migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller, list_visible
from tunnelnet.server.errors import MethodNotAllowed, not_found
from tunnelnet.server.query import apply_query, check_query
from tunnelnet.store.base import Doc

FIELDS = (
    "id", "network_id", "name", "description", "network_type", "physical_network",
    "segmentation_id", "created_at", "updated_at", "revision_number",
)  # fmt: skip
_NAMESPACE = uuid.UUID("6a1c3c62-6f3b-4f3e-9a55-7e0f2b1d0c11")  # tunnelnet's, fixed forever


def segment_id(network_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, network_id))


def view(network: Doc) -> Doc:
    return {
        "id": segment_id(network["id"]),
        "network_id": network["id"],
        "name": None,
        "description": "",
        "network_type": network["provider:network_type"],
        "physical_network": network["provider:physical_network"],
        "segmentation_id": network["provider:segmentation_id"],
        "created_at": network["created_at"],
        "updated_at": network["created_at"],  # a segment never changes once allocated
        "revision_number": 1,
    }


def list_segments(
    ctl: Controller, caller: Caller, query: Mapping[str, Sequence[str]]
) -> tuple[list[Doc], int]:
    check_query(query, FIELDS, "segment")
    with ctl.store.read() as txn:
        docs = [view(d) for d in list_visible(txn, caller, "network")]
        revision = txn.revision
    return apply_query(docs, query, "segment"), revision


def refuse_change() -> None:
    raise MethodNotAllowed(
        "segments are read-only in tunnelnet: a network has exactly one segment, chosen by "
        "its provider attributes when it is created; create another network instead"
    )


def show_segment(ctl: Controller, caller: Caller, wanted: str) -> Doc:
    with ctl.store.read() as txn:
        for network in list_visible(txn, caller, "network"):
            if segment_id(network["id"]) == wanted:
                return view(network)
    raise not_found("segment", wanted)
