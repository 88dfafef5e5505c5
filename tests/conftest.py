"""Markers that need privileges or reference peers skip with a clear reason where they can't run.

CI runs as root with the Debian packages installed by the Makefile, so there nothing skips for
these reasons; under CI=true a missing reference tool is a failure, not a skip, so a broken
install step can never turn the interop tests into silent skips.
"""

from __future__ import annotations

import os

import pytest

IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_root = pytest.mark.skip(
        reason="needs root for network namespaces and raw sockets (CI runs as root)"
    )
    for item in items:
        if (item.get_closest_marker("root") or item.get_closest_marker("netns")) and not IS_ROOT:
            item.add_marker(needs_root)
