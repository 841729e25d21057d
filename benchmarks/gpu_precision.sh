#!/usr/bin/env bash
# The GPU arithmetic on one CUDA machine, at most ~8 minutes: is --precision tf32x3 fp32-grade and faster?
#
#     bash benchmarks/gpu_precision.sh WEIGHTS.npz OUT_DIR [N_PER_FOLDER]
#
# 1. network and statistics throughput per precision (fp32, tf32x3, tf32) on in-memory
#    images, the FID deviation of each mode from strict fp32 (in-memory sets, tests/data on
#    CUDA against the CPU references, two PNG folders end to end): bench_gpu.py;
# 2. end to end from the two PNG folders, each implementation in its own fresh process:
#    fidkit fp32 / tf32x3 / tf32, torch-fidelity, torchmetrics, pytorch-fid (gpu_peers.py);
# 3. start-up on this machine (bench_startup.py, the first batch on CUDA: its own start included).
#
# Nothing is installed from the network (the machine has none). What is missing is reported in
# OUT_DIR/missing.json and its step is skipped, never a crash:
#   - the peers: pip wheels in $PEER_WHEELS (default .peer-wheels/, e.g. filled here by
#     `pip download --no-deps -d .peer-wheels pytorch-fid==0.3.0 torch-fidelity==0.4.0
#     torchmetrics==1.9.0 lightning-utilities`) are installed with --no-index --no-deps into
#     /tmp/peers; peers already importable are used as they are;
#   - scikit-image (for benchmarks/make_images.py's photograph crops): without it the folders
#     are cut from tests/data/fashion-mnist-mini (random crops, flips and tints, seeded).
# WEIGHTS.npz may arrive in parts (the device copy is limited to 64 MiB a call, the file is
# 87 MB): when it is missing and WEIGHTS.npz.part-* exist (`split -b 40M`), they are joined
# and the result checked against WEIGHTS.npz.sha256 when that file is there.
set -uo pipefail
W=${1:?WEIGHTS.npz}; OUT=${2:?OUT_DIR}; N=${3:-10000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
PY=${PYTHON:-python3}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( 480 - ($(date +%s) - START) )); }
note() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/log.txt"; }
MISSING=()

if [[ ! -f $W ]] && compgen -G "$W.part-*" >/dev/null; then
    cat "$W".part-* > "$W"
    if [[ -f $W.sha256 ]] && ! (cd "$(dirname "$W")" && sha256sum -c --quiet "$(basename "$W").sha256"); then
        note "joined weights do not match $W.sha256"; exit 1
    fi
fi
[[ -f $W ]] || { note "no weights at $W"; echo '{"missing": ["weights"]}' > "$OUT/missing.json"; exit 1; }
export FIDKIT_WEIGHTS=$W PYTHONUNBUFFERED=1 FIDKIT_NO_DOWNLOAD=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1 || true
$PY -c "import torch, sys; print(torch.__version__, torch.version.cuda, torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 1)" \
    > "$OUT/torch.txt" 2>&1 || { note "torch without CUDA: $(cat "$OUT/torch.txt")"; MISSING+=("cuda"); }
for m in numpy scipy PIL click; do
    $PY -c "import $m" 2>/dev/null || MISSING+=("$m")
done

# the peers: wheels carried in, else whatever is importable
WHEELS=${PEER_WHEELS:-$HERE/.peer-wheels}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/peers "$WHEELS"/*.whl > "$OUT/peer_install.txt" 2>&1 \
        || note "peer wheels did not install (see peer_install.txt)"
    export PYTHONPATH=/tmp/peers${PYTHONPATH:+:$PYTHONPATH}
fi
PEERS=()
for p in torch-fidelity:torch_fidelity torchmetrics:torchmetrics.image.fid pytorch-fid:pytorch_fid.fid_score; do
    if $PY -c "import ${p#*:}" 2>/dev/null; then PEERS+=("${p%%:*}"); else MISSING+=("${p%%:*}"); fi
done
printf '%s\n' "${MISSING[@]}" | $PY -c "import json, sys; json.dump({'missing': [l.strip() for l in sys.stdin if l.strip()]}, open('$OUT/missing.json', 'w'))"
note "missing: ${MISSING[*]:-nothing}; peers: ${PEERS[*]:-none}"
[[ " ${MISSING[*]} " == *" cuda "* ]] && exit 1

# two PNG folders of N images each
PNG=/tmp/png17
if [[ ! -d $PNG/b ]]; then
    if $PY -c "import skimage" 2>/dev/null; then
        for s in a b; do $PY benchmarks/make_images.py $PNG/$s --n "$N" --size 32 --split $s & done; wait
    else
        MISSING+=("scikit-image")
        $PY - "$PNG" "$N" <<'EOF'
import sys, numpy as np
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from PIL import Image
from fidkit.sources import read_idx_images
root, n = Path(sys.argv[1]), int(sys.argv[2])
mini = Path("tests/data/fashion-mnist-mini")
src = {"a": read_idx_images(mini / "t10k-images-idx3-ubyte.gz"), "b": read_idx_images(mini / "train-images-idx3-ubyte.gz")}
def write(args):
    split, lo, hi = args
    rng = np.random.default_rng([ord(split), lo])
    out = root / split
    for i in range(lo, hi):
        im = src[split][rng.integers(len(src[split]))]
        y, x = rng.integers(0, 7, 2)
        crop = im[y:y + 22, x:x + 22]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        rgb = (crop[..., None] * rng.uniform(0.4, 1.0, 3) + rng.uniform(0, 80, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).resize((32, 32), Image.BILINEAR).save(out / f"{i:05d}.png")
for s in "ab":
    (root / s).mkdir(parents=True, exist_ok=True)
jobs = [(s, lo, min(lo + 500, n)) for s in "ab" for lo in range(0, n, 500)]
with ProcessPoolExecutor() as ex:
    list(ex.map(write, jobs))
EOF
    fi
fi
note "images ready: $(ls $PNG/a | wc -l) + $(ls $PNG/b | wc -l)"

# 1. throughput and deviations per mode
timeout $(( $(left) - 240 )) $PY benchmarks/bench_gpu.py --weights "$W" --n 20000 --batch-sizes 500 \
    --precisions fp32,tf32x3,tf32 --png-dir $PNG --out "$OUT/gpu_issue17.json" > "$OUT/bench_gpu.txt" 2>&1 \
    || note "bench_gpu.py stopped (rc $?): see bench_gpu.txt"
note "bench_gpu done"

# 2. end to end, fresh processes (the peers that are there)
IMPLS=fidkit-fp32,fidkit-tf32x3,fidkit-tf32
for p in "${PEERS[@]}"; do IMPLS+=",$p"; done
timeout $(( $(left) - 30 )) $PY benchmarks/gpu_peers.py --weights "$W" --a $PNG/a --b $PNG/b --impls "$IMPLS" \
    > "$OUT/gpu_issue17_peers.jsonl" 2> "$OUT/gpu_peers.txt" || note "gpu_peers.py stopped (rc $?)"
note "peers done"

# 3. start-up (what is left of the time)
if (( $(left) > 25 )); then
    timeout $(( $(left) - 5 )) $PY benchmarks/bench_startup.py --repeats 2 --device cuda --out "$OUT/startup_gpu_machine.json" \
        > /dev/null 2> "$OUT/bench_startup.txt" || note "bench_startup.py stopped (rc $?)"
fi
printf '%s\n' "${MISSING[@]}" | $PY -c "import json, sys; json.dump({'missing': [l.strip() for l in sys.stdin if l.strip()]}, open('$OUT/missing.json', 'w'))"
note "done in $(( $(date +%s) - START )) s"
