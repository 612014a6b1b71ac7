"""tv3s: batch pseudo-labeling of video with TV3S (temporal state space sharing).

The Python API (see `tv3s.api` and the README's "Python API"): `submit` a `JobSpec` and keep
the `Job` handle (`status`, `wait`, `cancel`, `table`, `query`); `label` is the one call from
files to labels; `load_job_spec` reads a spec file. They are imported on first use, so `import tv3s` (and every CLI command) stays light.
"""

from pathlib import Path

__version__ = "0.1.0"

# The small TV3S trained on synthetic driving scenes that ships with the package (README:
# "Demo checkpoint" says how to reproduce it).
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "tv3s-demo-synthetic.pth"

_API = {
    "Job": "api",
    "JobFailed": "api",
    "submit": "api",
    "label": "api",
    "JobSpec": "schemas.job",
    "load_job_spec": "schemas.job",
}

__all__ = ["DEMO_CHECKPOINT", "__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported when first asked for."""
    if name not in _API:
        raise AttributeError(f"module 'tv3s' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
