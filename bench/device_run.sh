#!/usr/bin/env bash
# Every GPU check and benchmark of the project, for a machine with a CUDA GPU
# and no network (the device tool): installs the wheels found in .whl/ (numpy
# 2.4 for numba-cuda, nvCOMP for the side-by-side, pytest and hypothesis) into
# /tmp/site, then runs the named steps in order, each under its own time limit,
# writing logs and JSON to $OUT (default ./device_out). A step that fails or
# runs out of time does not stop the next one; the exit status is the number
# of steps that failed.
#
#   bench/device_run.sh tests encode decode      # one device call (<= 10 min)
#   bench/device_run.sh checkpoint torch memcheck
#
# Steps and their limits (seconds):
#   tests       every GPU test file whole (the -m gpu tests are all in them)    420
#   encode      bench/gpu_encode.py --mib 1024 (bit-exact check + nvCOMP compress) 300
#   decode      bench/gpu_decode.py --gib 1 (nvCOMP decode, same process)          360
#   backends    bench/backends.py (cpu vs gpu vs auto on host arrays, first calls) 300
#   checkpoint  bench/checkpoint.py --gpu (2 GiB bf16 vs safetensors.torch)         300
#   torch       bench/torch_model.py (1 B-parameter Llama, batch 1 and 32)          540
#   memcheck    2,000 corrupted files, decoded under compute-sanitizer memcheck   120 + 420
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed" >&2; exit 100; }
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv" 2>&1

failed=0
step() {  # step NAME LIMIT COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

for name in "$@"; do
    case "$name" in
    tests) step tests 420 python3 -m pytest -q -p no:cacheprovider tests/test_gpu_decode.py tests/test_gpu_encode.py \
        tests/test_gpu_batch.py tests/test_gpu_corpus.py tests/test_torch.py tests/test_auto_backend.py rans/gpu rans/torch ;;
    encode) step encode 300 python3 bench/gpu_encode.py --mib 1024 --out "$OUT/gpu_encode.json" ;;
    decode) step decode 360 python3 bench/gpu_decode.py --gib 1 --out "$OUT/gpu_decode.json" ;;
    backends) step backends 300 python3 bench/backends.py --out "$OUT/backends.json" ;;
    checkpoint) step checkpoint 300 python3 bench/checkpoint.py --gpu --workdir /tmp/ckpt --out "$OUT/checkpoint_gpu.json" ;;
    torch) step torch 540 python3 bench/torch_model.py --out "$OUT/torch_model.json" ;;
    memcheck)
        step corpus 120 python3 -c "from fuzz import corpus; corpus.write('/tmp/corpus', 2000, 0, 8)"
        step memcheck 420 compute-sanitizer --tool memcheck --error-exitcode 99 --log-file "$OUT/memcheck.txt" \
            python3 -m fuzz.gpu_corpus /tmp/corpus --json "$OUT/gpu_corpus.json" ;;
    *) echo "unknown step $name" | tee -a "$OUT/steps.txt"; failed=$((failed + 1)) ;;
    esac
done
exit "$failed"
