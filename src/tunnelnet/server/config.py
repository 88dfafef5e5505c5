"""Controller settings: defaults that work on one machine, a TOML file, `TUNNELNET_*` variables.

Precedence is flag > environment > file > default. Range syntax is Neutron's
(`vni_ranges = ["1:1000"]`, `geneve_vni_ranges = ["1:1000"]`,
`network_vlan_ranges = ["physnet1:100:199"]`) so an operator's ml2_conf.ini values carry over.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from tunnelnet.api.transport import is_loopback
from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import tunnel_kinds
from tunnelnet.store import url as store_url
from tunnelnet.store.base import StoreError

VXLAN_MAX = tunnel_kinds.VXLAN.key_max  # RFC 7348 section 5: 24-bit VNI
GRE_MAX = tunnel_kinds.GRE.key_max  # RFC 2890 section 2.1: 32-bit key
GENEVE_MAX = tunnel_kinds.GENEVE.key_max  # RFC 8926 section 3.4: 24-bit VNI
VLAN_MIN, VLAN_MAX = 1, 4094  # IEEE 802.1Q: 0 and 4095 are reserved
NETWORK_TYPES = (*tunnel_kinds.names(), "vlan", "flat", "local")
TENANT_TYPES = (*tunnel_kinds.names(), "vlan", "local")
# the setting holding each tunnel kind's tenant ranges, as Neutron's ml2_conf.ini names them:
# [ml2_type_vxlan] vni_ranges, [ml2_type_gre] tunnel_id_ranges, [ml2_type_geneve] vni_ranges
RANGE_SETTINGS: Final = {"vxlan": "vni_ranges", "gre": "gre_id_ranges",
                         "geneve": "geneve_vni_ranges"}
if set(RANGE_SETTINGS) != set(tunnel_kinds.names()):  # a new kind needs its setting here
    raise ImportError(f"tunnel kinds {sorted(set(tunnel_kinds.names()) ^ set(RANGE_SETTINGS))} "
                      "have no range setting (or no longer exist)")


AUTH_STRATEGIES = ("token", "noauth")


class ConfigError(TunnelnetError):
    """A bad setting, named with where it came from."""


Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9696
    db: str = ""
    # where the state lives: sqlite:PATH or etcd://HOST:PORT[,...][?prefix=/name] (store.url);
    # empty means sqlite:{db}, so `--db` and `db = ...` keep working
    store: str = ""
    admin_token: str = ""
    agent_token: str = ""
    tenant_network_types: tuple[str, ...] = ("vxlan",)
    vni_ranges: tuple[Range, ...] = ((1, VXLAN_MAX),)
    gre_id_ranges: tuple[Range, ...] = ((1, GRE_MAX),)
    # Neutron allocates Geneve VNIs apart from VXLAN's: the same number may serve both
    geneve_vni_ranges: tuple[Range, ...] = ((1, GENEVE_MAX),)
    network_vlan_ranges: Mapping[str, tuple[Range, ...]] = field(
        default_factory=lambda: {"physnet1": ((1000, 2999),)}
    )
    flat_networks: tuple[str, ...] = ("*",)
    underlay_mtu: int = 1500
    underlay_ip_version: int = 4
    mac_prefix: str = "fa:16:3e"
    # Neutron's default agent_down_time: a little over two missed 30 s reports
    agent_down_time: float = 75.0
    # how many change events the watch keeps for agents that reconnect
    event_retention: int = 100_000
    watch_bookmark_interval: float = 5.0
    # Neutron's auth_strategy: "token" checks X-Auth-Token; "noauth" (a standalone test
    # controller, what `auth_type: none` clients expect) lets any request act as admin
    auth_strategy: str = "token"
    # HTTPS on the TCP listener (PEM files); without them, plain HTTP only on loopback unless
    # insecure_http says the operator accepts tokens crossing the network in clear
    tls_cert: str = ""
    tls_key: str = ""
    insecure_http: bool = False

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def tunnel_ranges(self, kind: str) -> tuple[Range, ...]:
        """The tenant ranges of tunnel kind ``kind``."""
        ranges: tuple[Range, ...] = getattr(self, RANGE_SETTINGS[kind])
        return ranges

    def with_overrides(self, **changes: Any) -> ServerConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_db_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "tunnelnet", "server.db")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address {text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _range(text: str, lo: int, hi: int, where: str) -> Range:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"{where}: range {text!r} is not MIN:MAX")
    first, last = int(parts[0]), int(parts[1])
    if not lo <= first <= last <= hi:
        raise ConfigError(f"{where}: range {text!r} must lie within {lo}:{hi} with MIN <= MAX")
    return first, last


def parse_ranges(items: list[str], lo: int, hi: int, where: str) -> tuple[Range, ...]:
    return tuple(_range(item, lo, hi, where) for item in items)


def parse_vlan_ranges(items: list[str]) -> dict[str, tuple[Range, ...]]:
    """`physnet:min:max` entries; a bare `physnet` allows admins to pick ids, tenants get none."""
    out: dict[str, list[Range]] = {}
    for item in items:
        physnet, sep, rest = item.partition(":")
        if not physnet:
            raise ConfigError(f"network_vlan_ranges: {item!r} has no physical network name")
        out.setdefault(physnet, [])
        if sep:
            out[physnet].append(_range(rest, VLAN_MIN, VLAN_MAX, "network_vlan_ranges"))
    return {k: tuple(v) for k, v in out.items()}


def _str_list(data: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return value


_KNOWN = {
    "listen", "db", "store", "admin_token", "agent_token", "tenant_network_types",
    *RANGE_SETTINGS.values(), "network_vlan_ranges", "flat_networks", "underlay_mtu",
    "underlay_ip_version", "mac_prefix", "agent_down_time", "event_retention",
    "watch_bookmark_interval", "auth_strategy", "tls_cert", "tls_key", "insecure_http",
}  # fmt: skip


def from_mapping(data: Mapping[str, Any], where: str, base: ServerConfig) -> ServerConfig:
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    if "listen" in data:
        changes["host"], changes["port"] = parse_listen(str(data["listen"]))
    for key in ("db", "store", "admin_token", "agent_token", "mac_prefix", "auth_strategy",
                "tls_cert", "tls_key"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{where}: {key} must be a string")
            changes[key] = data[key]
    if changes.get("store"):
        try:
            store_url.parse(changes["store"])
        except StoreError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    for key, kind in (
        ("underlay_mtu", int), ("underlay_ip_version", int), ("event_retention", int),
        ("agent_down_time", float), ("watch_bookmark_interval", float),
    ):  # fmt: skip
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {key} must be a number")
            changes[key] = kind(value)
    if "insecure_http" in data:
        if not isinstance(data["insecure_http"], bool):
            raise ConfigError(f"{where}: insecure_http must be true or false")
        changes["insecure_http"] = data["insecure_http"]
    if (types := _str_list(data, "tenant_network_types", where)) is not None:
        bad = [t for t in types if t not in TENANT_TYPES]
        if bad or not types:
            raise ConfigError(f"{where}: tenant_network_types must be among {TENANT_TYPES}")
        changes["tenant_network_types"] = tuple(types)
    for tunnel, setting in RANGE_SETTINGS.items():
        if (items := _str_list(data, setting, where)) is not None:
            changes[setting] = parse_ranges(items, 1, tunnel_kinds.kind(tunnel).key_max,
                                            f"{where}: {setting}")
    if (items := _str_list(data, "network_vlan_ranges", where)) is not None:
        changes["network_vlan_ranges"] = parse_vlan_ranges(items)
    if (items := _str_list(data, "flat_networks", where)) is not None:
        changes["flat_networks"] = tuple(items)
    config = replace(base, **changes)
    validate(config, where)
    return config


def validate(config: ServerConfig, where: str) -> None:
    if config.auth_strategy not in AUTH_STRATEGIES:
        raise ConfigError(f"{where}: auth_strategy must be one of {', '.join(AUTH_STRATEGIES)}")
    if config.underlay_ip_version not in (4, 6):
        raise ConfigError(f"{where}: underlay_ip_version must be 4 or 6")
    if not 576 <= config.underlay_mtu <= 65535:
        raise ConfigError(f"{where}: underlay_mtu must be within 576..65535")
    octets = config.mac_prefix.split(":")
    if not 1 <= len(octets) <= 5 or not all(
        len(o) == 2 and all(c in "0123456789abcdefABCDEF" for c in o) for o in octets
    ):
        raise ConfigError(f"{where}: mac_prefix {config.mac_prefix!r} is not 1-5 hex octets")
    if int(octets[0], 16) & 1:
        raise ConfigError(f"{where}: mac_prefix {config.mac_prefix!r} is a multicast prefix")
    if config.agent_down_time <= 0 or config.event_retention < 1:
        raise ConfigError(f"{where}: agent_down_time and event_retention must be positive")


def load(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> ServerConfig:
    """The configuration from file, environment and flags (flags win)."""
    env = os.environ if env is None else env
    config = ServerConfig(db=default_db_path())
    path = path or env.get("TUNNELNET_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        config = from_mapping(data, path, config)
    env_map = {
        "TUNNELNET_LISTEN": "listen",
        "TUNNELNET_DB": "db",
        "TUNNELNET_STORE": "store",
        "TUNNELNET_ADMIN_TOKEN": "admin_token",
        "TUNNELNET_AGENT_TOKEN": "agent_token",
        "TUNNELNET_AUTH_STRATEGY": "auth_strategy",
        "TUNNELNET_TLS_CERT": "tls_cert",
        "TUNNELNET_TLS_KEY": "tls_key",
    }
    env_data = {key: env[var] for var, key in env_map.items() if env.get(var)}
    if env_data:
        config = from_mapping(env_data, "environment", config)
    flag_data = {k: v for k, v in flags.items() if v is not None}
    if flag_data:
        config = from_mapping(flag_data, "command line", config)
    return config


def check_transport(config: ServerConfig) -> None:
    """Judged when the server starts, once every layer is read (a file may name the listener
    and a flag the certificate). Every request carries a token; served in clear beyond this
    machine, anyone on the path could read it and act as its owner (api.transport)."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("TLS needs both a certificate and its key (--tls-cert and "
                          "--tls-key, or tls_cert and tls_key in the config file)")
    if not config.tls and not config.insecure_http and not is_loopback(config.host):
        raise ConfigError(
            f"refusing to serve plain HTTP on {config.host}:{config.port}: tokens would cross "
            "the network in clear. Give --tls-cert and --tls-key, listen on loopback, or "
            "accept the risk with --insecure-http")
