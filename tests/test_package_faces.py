"""Every package's face imports, names only what exists, and never hides a module of its own."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tv3s

PACKAGES = sorted(m.name for m in pkgutil.walk_packages(tv3s.__path__, "tv3s.") if m.ispkg)


@pytest.mark.parametrize("name", PACKAGES)
def test_face_exports_exist_and_shadow_no_submodule(name):
    package = importlib.import_module(name)
    assert package.__doc__ and len(package.__doc__.strip()) > 40, f"{name} says what it holds"
    exported = getattr(package, "__all__", [])
    for attr in exported:
        assert hasattr(package, attr), f"{name}.__all__ names {attr}, which is missing"
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert not submodules & set(exported), f"{name} exports names of its own modules: {submodules & set(exported)}"
