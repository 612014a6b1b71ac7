#!/usr/bin/env bash
# Packs what benchmarks/gpu.py needs on the device tool's GPU machine and it lacks, into
# .device/ (ignored by git), as two loads that each fit one call's 64 MiB with the repository:
#   .device/a: the tv3s-parity-small fixture, pydantic and PyAV    (stage a of run.sh)
#   .device/b: Delta Lake                                            (stage b of run.sh)
# That machine's image has torch, triton, numpy, pyarrow, pillow, pyyaml, fsspec and pandas
# (/work/.library/device/KINDS.md); nothing can be downloaded there. The versions are this
# checkout's virtual environment's, as wheels for its Python 3.12 on x86-64.
# Usage (here, where PyPI answers): benchmarks/device/pack.sh [PYTHON]
# (DEVICE_PYTHON=3.11 packs for a Python 3.11 instead, for a dry run of run.sh on this machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-.venv/bin/python}
fixtures=${TV3S_FIXTURES:-../shared/fixtures}

pinned() {  # NAME==VERSION for each name, as installed here
    "$python" -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"
}

download() {  # DEST NAME...
    local dest=$1
    shift
    mkdir -p "$dest"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" $(pinned "$@")
}

rm -rf .device
download .device/a/wheels pydantic pydantic-core annotated-types typing-inspection typing-extensions \
    av webdataset braceexpand
download .device/b/wheels deltalake arro3-core deprecated
mkdir -p .device/a/fixtures
cp -r "$fixtures/tv3s-parity-small" .device/a/fixtures/
chmod -R u+w .device
du -sh .device/a .device/b
