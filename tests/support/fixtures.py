"""The golden fixtures produced by the official TV3S code (../shared/fixtures, or TV3S_FIXTURES)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

# The golden fixtures live beside the checkout (../shared/fixtures, as in CI); TV3S_FIXTURES
# points elsewhere. Missing fixtures fail the tests that need them: a skip would hide it.
FIXTURES = Path(os.environ.get("TV3S_FIXTURES") or Path(__file__).resolve().parents[2].parent / "shared" / "fixtures")
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
