#!/usr/bin/env bash
# Every GPU figure of the speed work, on one CUDA machine, in one go:
#
#     bash benchmarks/gpu_run.sh WEIGHTS.npz OUT_DIR [1|2|all]
#
# Part 1: strict-fp32 profile and network variants (gpu_fp32.py); throughput per precision,
#         the fast modes' FID deviation, Fréchet on the GPU and fidkit's PNG-folder run
#         (bench_gpu.py).
# Part 2: fidkit and the peers end to end on the same two PNG folders, each in a fresh
#         process (gpu_peers.py); peak memory over 10k and 100k images with the real
#         network (bench_memory.py).
# The peers' wheels must be importable (pytorch-fid 0.3.0, torch-fidelity 0.4.0;
# torchmetrics where installed). Image folders are written under /tmp.
set -euo pipefail
W=$1; OUT=$2; PART=${3:-all}
export FIDKIT_WEIGHTS=$W PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
if [[ $PART == all || $PART == 1 ]]; then
    python3 benchmarks/gpu_fp32.py --weights "$W" --n 20000 --out "$OUT/gpu_fp32.json"
    for s in a b; do
        [[ -d /tmp/png/$s ]] || python3 benchmarks/make_images.py /tmp/png/$s --n 20000 --size 32 --split $s
    done
    python3 benchmarks/bench_gpu.py --weights "$W" --n 20000 --batch-sizes 500,1000 --png-dir /tmp/png \
        --out "$OUT/gpu.json"
fi
if [[ $PART == all || $PART == 2 ]]; then
    for s in a b; do
        [[ -d /tmp/png/$s ]] || python3 benchmarks/make_images.py /tmp/png/$s --n 20000 --size 32 --split $s
    done
    python3 benchmarks/gpu_peers.py --weights "$W" --a /tmp/png/a --b /tmp/png/b | tee "$OUT/gpu_peers.jsonl"
    python3 benchmarks/bench_memory.py --device cuda --n 10000,100000 --out "$OUT/memory_flat_cuda.json"
fi
