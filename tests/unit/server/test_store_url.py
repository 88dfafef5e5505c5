"""Choosing the store by URL: what is accepted, and bad URLs refused naming the bad part."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.server.config import ConfigError, ServerConfig, load
from tunnelnet.server.runner import store_url
from tunnelnet.store.url import Backend, StoreUrl, StoreUrlError, parse


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:/var/lib/t.db", StoreUrl(Backend.SQLITE, path="/var/lib/t.db")),
        ("sqlite:rel/t.db", StoreUrl(Backend.SQLITE, path="rel/t.db")),
        ("sqlite:///abs/t.db", StoreUrl(Backend.SQLITE, path="/abs/t.db")),
        (
            "etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379",
            StoreUrl(Backend.ETCD, endpoints=("10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379")),
        ),
        ("etcd://db.example", StoreUrl(Backend.ETCD, endpoints=("db.example:2379",))),
        (
            "etcd://[fd00::1]:2379?prefix=/cloud-b/",
            StoreUrl(Backend.ETCD, endpoints=("[fd00::1]:2379",), prefix="/cloud-b"),
        ),
    ],
)
def test_good_urls(url: str, expected: StoreUrl) -> None:
    assert parse(url) == expected


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/var/lib/t.db", "no scheme"),
        ("postgres://h/db", "unknown scheme 'postgres'"),
        ("sqlite:", "no database path"),
        ("etcd:h:2379", "etcd://HOST:PORT"),
        ("etcd://", "no etcd endpoint"),
        ("etcd://h:99999", "bad etcd port '99999'"),
        ("etcd://h:2379,h2:x", "bad etcd port 'x'"),
        ("etcd://a b:1", "bad etcd host 'a b'"),
        ("etcd://[zz::1]:1", "'[zz::1]' is not an IPv6 address"),
        ("etcd://h:1?prefix=nope", "prefix 'nope' must be like /name"),
        ("etcd://h:1?pefix=/x", "unknown parameter(s) pefix"),
    ],
)
def test_bad_urls_are_refused_naming_the_bad_part(url: str, named: str) -> None:
    with pytest.raises(StoreUrlError) as info:
        parse(url)
    assert named in str(info.value)


def test_without_a_store_the_db_file_is_the_sqlite_store() -> None:
    assert store_url(ServerConfig(db="/x/s.db")) == StoreUrl(Backend.SQLITE, path="/x/s.db")


def test_the_store_comes_from_file_environment_or_flag(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text('store = "etcd://127.0.0.1:2379?prefix=/file"\n')
    assert load(str(conf), env={}).store == "etcd://127.0.0.1:2379?prefix=/file"
    env = {"TUNNELNET_STORE": "etcd://127.0.0.1:2379?prefix=/env"}
    assert load(str(conf), env=env).store.endswith("/env")
    assert load(str(conf), env=env, store="sqlite:/tmp/x.db").store == "sqlite:/tmp/x.db"


def test_a_bad_store_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text('store = "etcd://h:0"\n')
    with pytest.raises(ConfigError, match=rf"{conf}: store URL 'etcd://h:0': bad etcd port"):
        load(str(conf), env={})


def test_a_sqlite_url_opens_that_file(tmp_path: Path) -> None:
    from tunnelnet.store import SqliteStore, open_store

    store = open_store(f"sqlite:{tmp_path}/deep/state.db")
    try:
        assert isinstance(store, SqliteStore)
        with store.write() as txn:
            txn.put("network", "n", {}, None)
        assert (tmp_path / "deep" / "state.db").exists()
    finally:
        store.close()
