"""Controller settings: file, environment and flags, and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.server.config import ConfigError, load


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('listen = "127.0.0.1:1111"\nvni_ranges = ["100:200", "300:300"]\n'
                    'network_vlan_ranges = ["physnet1:10:20", "physnet2"]\n'
                    'admin_token = "from-file"\nunderlay_mtu = 9000\n')  # fmt: skip
    config = load(str(path), env={"TUNNELNET_ADMIN_TOKEN": "from-env"}, listen="0.0.0.0:2222")
    assert (config.host, config.port) == ("0.0.0.0", 2222)
    assert config.admin_token == "from-env"
    assert config.vni_ranges == ((100, 200), (300, 300))
    assert config.network_vlan_ranges == {"physnet1": ((10, 20),), "physnet2": ()}
    assert config.underlay_mtu == 9000


def test_geneve_ranges_are_a_setting_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('tenant_network_types = ["geneve"]\ngeneve_vni_ranges = ["7:9"]\n')
    config = load(str(path), env={})
    assert config.tenant_network_types == ("geneve",)
    assert config.tunnel_ranges("geneve") == ((7, 9),)
    assert config.vni_ranges == config.tunnel_ranges("vxlan") == ((1, 2**24 - 1),)


def test_auth_strategy_is_token_unless_set_to_neutrons_noauth(tmp_path: Path) -> None:
    assert load(None, env={}).auth_strategy == "token"
    path = tmp_path / "server.toml"
    path.write_text('auth_strategy = "noauth"\n')
    assert load(str(path), env={}).auth_strategy == "noauth"
    assert load(None, env={"TUNNELNET_AUTH_STRATEGY": "noauth"}).auth_strategy == "noauth"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('vni_ranges = ["5:1"]', "vni_ranges"),
        ('vni_ranges = ["0:10"]', "vni_ranges"),
        ('geneve_vni_ranges = ["1:16777216"]', "geneve_vni_ranges: range '1:16777216' must lie "
         "within 1:16777215"),
        ('network_vlan_ranges = ["physnet1:1:4095"]', "network_vlan_ranges"),
        ('mac_prefix = "fb:16"', "multicast"),
        ('listen = "nowhere"', "HOST:PORT"),
        ("colour = 1", "unknown setting"),
        ('tenant_network_types = ["flat"]', "tenant_network_types"),
        ("underlay_mtu = true", "underlay_mtu"),
        ("this is not toml", "server.toml"),
        ('auth_strategy = "keystone"', "auth_strategy must be one of token, noauth"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=needle):
        load(str(path), env={})


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load(str(tmp_path / "nope.toml"), env={})
