#!/usr/bin/env bash
# Runs one stage of the GPU checks on the device tool's machine, after installing the stage's
# load of wheels (benchmarks/device/pack.sh) into /tmp/site, which lasts while the machine
# stays warm (30 s after a call). Logs go to $OUT, which the tool brings back.
#   a: gpu.py --parity on tv3s-parity-small, then gpu.py's model and scan sections  (~5 min, estimated)
#   b: gpu.py's pipeline section, then benchmarks/finishing.py on B1 at 480p    (~3 min, estimated)
#      b needs a's install (PyAV): call it right after a, on the same warm machine.
#   c: gpu.py's compile section: torch.compile against CUDA graphs    (~4 min, estimated: 4 compiles)
#      needs a's install too; the least important stage, for what device time is left.
# From the session, with the device tool:
#   run(command="bash benchmarks/device/run.sh a", carry=[".device/a"], timeout_s=480)
#   run(command="bash benchmarks/device/run.sh b", carry=[".device/b"], timeout_s=480)
#   run(command="bash benchmarks/device/run.sh c", carry=[".device/a"], timeout_s=...)  (if time is left)
# DRY=1 runs the same steps on tiny shapes on CPU: a rehearsal on any machine.
set -uo pipefail
stage=${1:?stage a, b or c}
gpu_args=() finishing_args=(--device cuda --preset tv3s-b1-vspw --size 480x854 --threads 8 --videos 2 --frames 48)
if [ -n "${DRY:-}" ]; then
    gpu_args=(--smoke --device cpu)
    finishing_args=(--preset tv3s-demo --size 64x96 --videos 1 --frames 4 --repeats 1)
fi
out=${OUT:-/tmp/tv3s-device-out}
mkdir -p "$out"
log="$out/$stage.log"
load=$stage
[ "$stage" = c ] && load=a # c's wheels are a's
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    ".device/$load"/wheels/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$log"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' 2>&1 | tee -a "$log"
case "$stage" in
    a)
        TV3S_FIXTURES=.device/a/fixtures timeout 150 python3 benchmarks/gpu.py --parity \
            --fixtures tv3s-parity-small "${gpu_args[@]}" 2>&1 | tee -a "$log"
        timeout 300 python3 benchmarks/gpu.py --sections model,scan "${gpu_args[@]}" 2>&1 | tee -a "$log"
        ;;
    b)
        timeout 240 python3 benchmarks/gpu.py --sections pipeline "${gpu_args[@]}" 2>&1 | tee -a "$log"
        timeout 200 python3 benchmarks/finishing.py --repeats 2 "${finishing_args[@]}" 2>&1 | tee -a "$log"
        ;;
    c)
        timeout 420 python3 benchmarks/gpu.py --sections compile "${gpu_args[@]}" 2>&1 | tee -a "$log"
        ;;
    *)
        echo "stage must be a, b or c, got $stage" >&2
        exit 2
        ;;
esac
