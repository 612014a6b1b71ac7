"""Shared test fixtures: the parity model and the session's S3 server; Ray kept on loopback."""

from __future__ import annotations

import os

import pytest

from .support.fixtures import fixture_config, fixture_dir
from .support.raycluster import RAY_ENV

# Before anything imports Ray: Ray reads these once, at import (loopback only, explicit auth mode).
os.environ.update(RAY_ENV)


@pytest.fixture(scope="session")
def small_model():
    """The MiT-B0 parity fixture's model with its checkpoint (shared, read-only use)."""
    from tv3s.model import build_model, load_checkpoint

    name = "tv3s-parity-small"
    model = build_model(fixture_config(name)["model"])
    return load_checkpoint(model, fixture_dir(name) / "checkpoint.pth")


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server on 127.0.0.1 for the whole session (see tv3s/local_s3.py)."""
    from tv3s.local_s3 import s3_server

    with s3_server() as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the S3 server are marked `s3` (select or skip them with -m)."""
    for item in items:
        if "s3" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)
