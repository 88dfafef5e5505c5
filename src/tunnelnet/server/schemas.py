"""Request bodies as pydantic models: the shape and types of what clients may send.

They serve twice: the REST layer publishes them in the OpenAPI schema, and the service modules
validate every body with them (also bodies from in-process callers), so a field of the wrong
type or an unknown field is refused with its name. Values whose rules need the store (is this
segment free, is this address in the subnet) are checked by the service modules.
Field names with a colon (`provider:network_type`) are aliases, as Neutron spells them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def _text() -> Any:
    return Field(None, max_length=255)


class _Body(BaseModel):
    # strict: "5" is not an int and "true" is not a bool; unknown fields are errors
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class NetworkCreate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: bool | None = None
    project_id: str | None = None
    tenant_id: str | None = None
    mtu: int | None = None
    provider_network_type: NetworkType | None = Field(None, alias="provider:network_type")
    provider_physical_network: str | None = Field(
        None, alias="provider:physical_network", max_length=64
    )
    provider_segmentation_id: int | None = Field(None, alias="provider:segmentation_id")


class NetworkUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: bool | None = None
    mtu: int | None = None
    # accepted only to refuse them with a clear reason (segments never change under agents)
    provider_network_type: NetworkType | None = Field(None, alias="provider:network_type")
    provider_physical_network: str | None = Field(None, alias="provider:physical_network")
    provider_segmentation_id: int | None = Field(None, alias="provider:segmentation_id")


class AllocationPool(_Body):
    start: str
    end: str


class SubnetCreate(_Body):
    network_id: str
    cidr: str
    ip_version: Literal[4, 6] | None = None
    name: str | None = _text()
    description: str | None = _text()
    gateway_ip: str | None = None
    allocation_pools: list[AllocationPool] | None = None
    enable_dhcp: bool | None = None
    dns_nameservers: list[str] | None = None
    project_id: str | None = None
    tenant_id: str | None = None


class SubnetUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    enable_dhcp: bool | None = None
    dns_nameservers: list[str] | None = None


class FixedIp(_Body):
    subnet_id: str | None = None
    ip_address: str | None = None


class PortCreate(_Body):
    network_id: str
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: bool | None = None
    mac_address: str | None = None
    fixed_ips: list[FixedIp] | None = None
    device_id: str | None = _text()
    device_owner: str | None = _text()
    binding_host_id: str | None = Field(None, alias="binding:host_id", max_length=255)
    project_id: str | None = None
    tenant_id: str | None = None


class PortUpdate(_Body):
    name: str | None = _text()
    description: str | None = _text()
    admin_state_up: bool | None = None
    fixed_ips: list[FixedIp] | None = None
    device_id: str | None = _text()
    device_owner: str | None = _text()
    binding_host_id: str | None = Field(None, alias="binding:host_id", max_length=255)
    status: PortStatus | None = None
    mac_address: str | None = None


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


class AgentHeartbeat(_Body):
    configurations: AgentConfigurations | None = None


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


def describe(exc: ValidationError, resource: str) -> str:
    """One line naming each bad field, e.g. `network.provider:segmentation_id: ...`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in (resource, *error["loc"]))
        parts.append(f"{where}: {error['msg']}")
    return "invalid input for " + "; ".join(parts)


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
