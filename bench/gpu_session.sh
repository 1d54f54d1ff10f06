#!/usr/bin/env bash
# A GPU session's checks in as few device calls as possible (each call starts a bare machine:
# the build is repeated per call). Run from the repository root on a CUDA machine:
#
#   OUT=/some/dir bash bench/gpu_session.sh test    # CUDA build + every GPU test   (~10 min budget)
#   OUT=/some/dir bash bench/gpu_session.sh bench   # CUDA build + GPU benchmarks  (~10 min budget)
#
# With the device tool: run(command="bash bench/gpu_session.sh test", timeout_s=600), then
# "... bench". At most 8 files land in $OUT (the device tool's limit); a stage that would run
# past its budget is cut by `timeout` and still leaves its log. PY picks the interpreter (the
# machine's python3 holds its torch, triton and cupy).
set -uo pipefail
stage=${1:?usage: bench/gpu_session.sh test|bench}
OUT=${OUT:?set OUT to an output folder}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

build() {  # the extension with its CUDA sources for Hopper, against the machine's torch
  SLT_HW_BUILD_CUDA=1 SLT_HW_CUDA_ARCHS=90 timeout 300 "$PY" -m pip install --no-deps --no-build-isolation -e . \
    > "$OUT/build.log" 2>&1 || { echo "build failed: see build.log"; tail -30 "$OUT/build.log"; }
  "$PY" -c "import slt_hw._ext as e; m, why = e.load(); print('extension:', 'loaded' if m else why)" \
    >> "$OUT/build.log" 2>&1
}

case "$stage" in
  test)
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    build
    # GPU-only tests and the kernels' tests, which run natively (not interpreted) on a GPU
    timeout 420 "$PY" -P -m pytest -q -rs tests/test_cuda_linear.py tests/test_triton_linear.py \
      tests/test_triton_mha.py tests/test_triton_contract.py tests/test_ops.py tests/test_mha.py \
      2>&1 | tee "$OUT/tests.log" | tail -40
    ;;
  bench)
    build
    timeout 280 "$PY" bench/bench_gpu_linear.py 2>&1 | tee "$OUT/gpu_linear.txt" | tail -60
    cp bench/results/gpu_linear.csv "$OUT/" 2>/dev/null
    timeout 200 "$PY" bench/bench_mha.py 2>&1 | tee "$OUT/mha.txt" | tail -60
    cp bench/results/mha_cuda.csv "$OUT/" 2>/dev/null
    ;;
  *)
    echo "unknown stage $stage: expected test or bench" >&2
    exit 2
    ;;
esac
