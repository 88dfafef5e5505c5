"""Request bodies as pydantic models: the shape and types of what clients may send.

They serve twice: the REST layer publishes them in the OpenAPI schema, and the service modules
validate every body with them (also bodies from in-process callers), so a field of the wrong
type or an unknown field is refused with its name. Values whose rules need the store (is this
segment free, is this address in the subnet) are checked by the service modules.
Field names with a colon (`provider:network_type`) are aliases, as Neutron spells them.
Numbers and booleans sent as strings are converted where Neutron converts them
(`"mtu": "1400"`, `"provider:segmentation_id": "500"`, `"admin_state_up": "false"`: the
`openstack` CLI sends some of them so); everything else keeps its JSON type.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from tunnelnet.packet import tunnel_kinds
from tunnelnet.server.config import NETWORK_TYPES
from tunnelnet.server.errors import BadRequest

# Literals built from the registry: pydantic validates and publishes them as enums; mypy, which
# cannot read a Literal built at run time, sees str
if TYPE_CHECKING:
    NetworkType = str
    TunnelType = str
else:
    NetworkType = Literal[NETWORK_TYPES]
    TunnelType = Literal[tunnel_kinds.names()]
PortStatus = Literal["DOWN", "BUILD", "ACTIVE", "ERROR"]


def _to_int(value: Any) -> Any:
    """Neutron's convert_to_int for text: "1400" -> 1400 (anything else is left to the
    strict check, which names the field)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
    return value


def _to_bool(value: Any) -> Any:
    """Neutron's convert_to_boolean: "true"/"false" in any case, "1"/"0", 1/0."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    if type(value) is int and value in (0, 1):
        return bool(value)
    return value


Int = Annotated[int, BeforeValidator(_to_int)]
Bool = Annotated[bool, BeforeValidator(_to_bool)]
IpVersion = Annotated[Literal[4, 6], BeforeValidator(_to_int)]


def _text() -> Any:
    return Field(None, max_length=255)


class _Body(BaseModel):
    # strict: "5" is not an int and "true" is not a bool; unknown fields are errors
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class NetworkCreate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: Bool | None = None
    project_id: str | None = None
    tenant_id: str | None = None
    mtu: Int | None = None
    provider_network_type: NetworkType | None = Field(None, alias="provider:network_type")
    provider_physical_network: str | None = Field(
        None, alias="provider:physical_network", max_length=64
    )
    provider_segmentation_id: Int | None = Field(None, alias="provider:segmentation_id")
    # standard attributes: values tunnelnet cannot honour are refused by networks.py with why
    shared: Bool | None = None
    router_external: Bool | None = Field(None, alias="router:external")
    port_security_enabled: Bool | None = None


class NetworkUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: Bool | None = None
    mtu: Int | None = None
    # accepted only to refuse them with a clear reason (segments never change under agents)
    provider_network_type: NetworkType | None = Field(None, alias="provider:network_type")
    provider_physical_network: str | None = Field(None, alias="provider:physical_network")
    provider_segmentation_id: Int | None = Field(None, alias="provider:segmentation_id")
    shared: Bool | None = None
    router_external: Bool | None = Field(None, alias="router:external")
    port_security_enabled: Bool | None = None


class AllocationPool(_Body):
    start: str
    end: str


class HostRoute(_Body):
    destination: str
    nexthop: str


class SubnetCreate(_Body):
    network_id: str
    cidr: str
    ip_version: IpVersion | None = None
    name: str | None = _text()
    description: str | None = _text()
    gateway_ip: str | None = None
    allocation_pools: list[AllocationPool] | None = None
    enable_dhcp: Bool | None = None
    dns_nameservers: list[str] | None = None
    host_routes: list[HostRoute] | None = None
    # accepted only to refuse a mode with the reason (no RA, no DHCPv6 here)
    ipv6_address_mode: str | None = None
    ipv6_ra_mode: str | None = None
    project_id: str | None = None
    tenant_id: str | None = None


class SubnetUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    enable_dhcp: Bool | None = None
    dns_nameservers: list[str] | None = None
    gateway_ip: str | None = None
    allocation_pools: list[AllocationPool] | None = None
    host_routes: list[HostRoute] | None = None
    ipv6_address_mode: str | None = None
    ipv6_ra_mode: str | None = None


class FixedIp(_Body):
    subnet_id: str | None = None
    ip_address: str | None = None


class AddressPair(_Body):
    ip_address: str
    mac_address: str | None = None


class PortCreate(_Body):
    network_id: str
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: Bool | None = None
    mac_address: str | None = None
    fixed_ips: list[FixedIp] | None = None
    device_id: str | None = _text()
    device_owner: str | None = _text()
    binding_host_id: str | None = Field(None, alias="binding:host_id", max_length=255)
    binding_vnic_type: str | None = Field(None, alias="binding:vnic_type")
    binding_profile: dict[str, Any] | None = Field(None, alias="binding:profile")
    port_security_enabled: Bool | None = None
    allowed_address_pairs: list[AddressPair] | None = None
    security_groups: list[str] | None = None
    project_id: str | None = None
    tenant_id: str | None = None


class PortUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: Bool | None = None
    fixed_ips: list[FixedIp] | None = None
    device_id: str | None = _text()
    device_owner: str | None = _text()
    binding_host_id: str | None = Field(None, alias="binding:host_id", max_length=255)
    binding_vnic_type: str | None = Field(None, alias="binding:vnic_type")
    binding_profile: dict[str, Any] | None = Field(None, alias="binding:profile")
    port_security_enabled: Bool | None = None
    allowed_address_pairs: list[AddressPair] | None = None
    security_groups: list[str] | None = None
    status: PortStatus | None = None
    mac_address: str | None = None


# ports per status report: a hypervisor's worth (Neutron's agents send theirs in one
# update_device_list call); more is refused rather than held in one long write transaction
MAX_STATUS_REPORT = 1000


class PortStatusItem(_Body):
    id: str = Field(min_length=1, max_length=255)
    status: PortStatus


class PortStatusReport(_Body):
    """An agent's statuses for a list of its ports, in one request (update_device_list)."""

    port_statuses: list[PortStatusItem] = Field(min_length=1, max_length=MAX_STATUS_REPORT)


class AgentConfigurations(BaseModel):
    # agents may report more than we know (Neutron agents do); the known keys are checked
    model_config = ConfigDict(extra="allow", strict=True)
    tunneling_ip: str | None = None
    tunnel_types: list[TunnelType] | None = None
    bridge_mappings: dict[str, str] | None = None
    l2_population: bool | None = None
    arp_responder_enabled: bool | None = None


class AgentRegister(_Body):
    host: str = Field(min_length=1, max_length=255)
    agent_type: str = Field("Open vSwitch agent", max_length=255)
    binary: str = Field("tunnelnet-agent", max_length=255)
    topic: str | None = None
    description: str | None = _text()
    configurations: AgentConfigurations | None = None


class AgentUpdate(_Body):
    admin_state_up: bool | None = None
    description: str | None = _text()


class TunnelState(_Body):
    """One tunnel's liveness as its agent reads it from the switch's BFD session."""

    port: str = Field(min_length=1, max_length=15)
    remote_ip: str = Field(min_length=7, max_length=15)
    state: Literal["up", "down", "init", "admin_down"]
    forwarding: bool
    diagnostic: str | None = Field(None, max_length=64)
    changed_at: float | None = Field(None, ge=0)  # seconds since the epoch, None: unknown


class AgentHeartbeat(_Body):
    configurations: AgentConfigurations | None = None
    # the agent's tunnels that run BFD, with their state (replaces what it reported before)
    tunnels: list[TunnelState] | None = Field(None, max_length=4096)


class ProjectCreate(_Body):
    id: str | None = None
    name: str = Field(min_length=1, max_length=64)
    description: str | None = _text()


class ProjectUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=64)
    description: str | None = _text()


class TokenCreate(_Body):
    project: str | None = None
    role: Literal["project", "agent"] = "project"


M = TypeVar("M", bound=BaseModel)


def describe_errors(errors: Sequence[ErrorDetails | Any], prefix: Sequence[str] = ()) -> str:
    """One line naming each bad field, e.g. `network.provider:segmentation_id: ...`.

    Names no resource has are Neutron's "Unrecognized attribute(s)", listed together, rather
    than pydantic's "Extra inputs are not permitted" one by one."""
    parts: list[str] = []
    unknown: list[str] = []
    for error in errors:
        where = ".".join(str(p) for p in (*prefix, *error["loc"])) or "body"
        if error["type"] == "extra_forbidden":
            unknown.append(where)
        else:
            parts.append(f"{where}: {error['msg']}")
    out = []
    if unknown:
        names = dict.fromkeys(unknown)  # the same name may fail two body forms
        out.append("Unrecognized attribute(s) " + ", ".join(f"'{u}'" for u in names))
    if parts:
        out.append("invalid input for " + "; ".join(dict.fromkeys(parts)))
    return "; ".join(out)


def describe(exc: ValidationError, resource: str) -> str:
    return describe_errors(exc.errors(), (resource,))


def parse(model: type[M], data: Any, resource: str) -> tuple[M, dict[str, Any]]:
    """The validated model and the fields the client actually sent (by their API names)."""
    if not isinstance(data, dict):
        raise BadRequest(f"{resource} must be a JSON object", "InvalidInput")
    try:
        # Python's JSON reader takes NaN and Infinity; RFC 8259 JSON (and our answers) cannot
        json.dumps(data, allow_nan=False)
    except ValueError:
        raise BadRequest(f"{resource} contains NaN or Infinity, which JSON does not allow",
                         "InvalidInput") from None  # fmt: skip
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe(exc, resource), "InvalidInput") from None
    return parsed, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")


def unwrap(body: Any, resource: str) -> Any:
    """`{"network": {...}}` -> the inner object; names the missing wrapper."""
    if not isinstance(body, dict) or set(body) != {resource}:
        raise BadRequest(f'the request body must be {{"{resource}": {{...}}}}', "InvalidInput")
    return body[resource]
