"""Shared test helpers: the golden fixtures produced by the official TV3S code."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from .raycluster import RAY_ENV

# Before anything imports Ray: Ray reads these once, at import (loopback only, explicit auth mode).
os.environ.update(RAY_ENV)

# The golden fixtures live beside the checkout (../shared/fixtures, as in CI); TV3S_FIXTURES
# points elsewhere. Missing fixtures fail the tests that need them: a skip would hide it.
FIXTURES = Path(os.environ.get("TV3S_FIXTURES") or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures")
FIXTURE_NAMES = ("tv3s-parity-small", "tv3s-parity-city-small", "tv3s-parity-swin-small")


def fixture_dir(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_dir():
        pytest.fail(f"fixture {path} is missing: put ../shared beside the checkout or set TV3S_FIXTURES")
    return path


def fixture_config(name: str) -> dict:
    return json.loads((fixture_dir(name) / "config.json").read_text())


def fixture_frames(name: str) -> np.ndarray:
    return np.load(fixture_dir(name) / "frames.npy")


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
