#!/usr/bin/env bash
# The trainer's GPU measurements, as phases that each fit in one call of a machine lent for
# ten minutes at a time (nothing reachable from it; torch, numpy 2, numba, OpenCV; no MediaPipe).
#
#   here, where MediaPipe is:  bash bench/gpu.sh pack [SRC] [N]
#       N faces of SRC (default ../shared/data/celeba-wild, 2400) and their landmark cache into
#       .carry/gpu/ (git-ignored; under 64 MiB, to carry along)
#   there, from the repository root, .carry/gpu carried, results under $OUT:
#       bash bench/gpu.sh speed          bench/train.py and bench/predict.py on CUDA (~5 min)
#       bash bench/gpu.sh data           pairs at 256 px from the cache, every type (~1 min)
#       bash bench/gpu.sh train NAME MINUTES [WAIT]
#                                        train run NAME ($MODEL, default NAME: ra-unet,
#                                        attention-unet, unet) for MINUTES in the background
#                                        (it outlives the call while the machine is held) and
#                                        wait up to WAIT minutes (default 9) for it
#       bash bench/gpu.sh wait NAME [WAIT]    wait for that run again (a run longer than a call)
#       bash bench/gpu.sh eval NAME...   maskface eval of the runs' best.pt on the test split
#
# One 30-minute lease, in order (each line one call, the next made at once, since an idle
# machine goes back after 30 s): speed (~5 min); "data && train ra-unet 12 8" (~9 min, the
# compile inside the 12); wait ra-unet (~4 min); eval ra-unet (~2 min). The paper's ablation
# needs another lease: data; then train unet 6, train attention-unet 6 and
# "MODEL=ra-unet train ra-unet-6 6", each its own call; eval unet attention-unet ra-unet-6.
# Each call names .carry in carry. BATCH, LR, DEVICE and TRAIN_ARGS (more train flags)
# override; a CPU dry run (what has been checked so far, in Python 3.12 with numpy 2, numba
# 0.68, OpenCV 5 and no MediaPipe): DEVICE=cpu BATCH=4 TRAIN_ARGS='--width 8 --depth 3'.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:?phase: pack, speed, data, train, wait or eval}
shift
CARRY=.carry/gpu
WORK=${MASKFACE_GPU_WORK:-/tmp/maskface-gpu}
OUT=${OUT:-$WORK/out}
BATCH=${BATCH:-64}
LR=${LR:-4e-4}  # the paper's 1e-4 is for batch 8
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"

package() {  # the checkout as the maskface package, where it is not installed
    if ! python3 -c "import maskface" 2>/dev/null; then
        mkdir -p "$WORK/pkg"
        ln -sfn "$PWD" "$WORK/pkg/maskface"
        export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONUNBUFFERED=1
}

wait_for() {  # NAME MINUTES: until the run's process ends, or MINUTES pass
    local run=$WORK/runs/$1 until=$(( $(date +%s) + ${2%.*} * 60 ))
    while kill -0 "$(cat "$run/pid")" 2>/dev/null && (( $(date +%s) < until )); do sleep 10; done
    cp "$run/metrics.jsonl" "$OUT/$1-metrics.jsonl" 2>/dev/null || true
    cp "$run/train.log" "$OUT/$1-train.log" 2>/dev/null || true
    local grid
    grid=$(ls "$run"/samples/*.png 2>/dev/null | tail -n 1)
    [[ -n $grid ]] && cp "$grid" "$OUT/$1-samples.png"
    if kill -0 "$(cat "$run/pid")" 2>/dev/null; then
        echo "$1: still training; call: bash bench/gpu.sh wait $1"
    else
        echo "$1: finished"; tail -n 3 "$run/train.log"
    fi
}

case $phase in
pack)
    src=${1:-../shared/data/celeba-wild}
    n=${2:-2400}
    rm -rf "$CARRY" && mkdir -p "$CARRY/faces"
    find "$src" -maxdepth 1 -iname '*.jpg' | sort | sed -n "1,${n}p" | xargs cp -t "$CARRY/faces"
    # A cold run writes the landmark cache; its shards are not needed.
    python3 -m maskface.cli generate --no-progress --src "$CARRY/faces" --out "$WORK/pack" \
        --types surgical --per-face 1
    cp "$WORK/pack/landmarks.npz" "$CARRY/landmarks.npz"
    rm -rf "$WORK/pack"
    du -sh "$CARRY"
    ;;
speed)
    package
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
    python3 bench/train.py --device "$DEVICE" --batches 8,32,64,128 --steps 30 \
        | tee "$OUT/train-speed.json"
    python3 bench/predict.py --device "$DEVICE" --batch 64 --compile | tee "$OUT/predict.json"
    ;;
data)
    package
    rm -rf "$WORK/data"
    python3 -m maskface.cli generate --no-progress --src "$CARRY/faces" \
        --landmarks-cache "$CARRY/landmarks.npz" --out "$WORK/data" --types all --per-face 3 \
        --wear proper=0.8,nose-exposed=0.12,under-chin=0.08 --frame-cut 0.2 --jobs "$(nproc)"
    cp "$WORK/data/manifest.json" "$OUT/data-manifest.json"
    ;;
train)
    package
    name=${1:?NAME}
    run=$WORK/runs/$name
    mkdir -p "$run"
    compile=--compile
    [[ $DEVICE == cpu ]] && compile=
    # setsid: the run goes on between calls (the machine keeps it while it is held).
    setsid python3 -m maskface.cli train --data "$WORK/data" --out "$run" \
        --model "${MODEL:-$name}" --batch-size "$BATCH" --lr "$LR" --device "$DEVICE" $compile \
        --max-minutes "${2:?MINUTES}" --workers "$(( $(nproc) > 12 ? 12 : $(nproc) ))" \
        --log-every 50 --val-batches 20 ${TRAIN_ARGS:-} > "$run/train.log" 2>&1 < /dev/null &
    echo $! > "$run/pid"
    wait_for "$name" "${3:-9}"
    ;;
wait)
    package
    wait_for "${1:?NAME}" "${2:-9}"
    ;;
eval)
    package
    args=()
    for name in "${@:-ra-unet}"; do
        args+=(--checkpoint "$WORK/runs/$name/checkpoints/best.pt" --label "$name")
    done
    python3 -m maskface.cli eval "${args[@]}" --data "$WORK/data" --out "$OUT/eval" \
        --device "$DEVICE"
    cat "$OUT/eval/report.md"
    ;;
*)
    echo "unknown phase $phase" >&2
    exit 2
    ;;
esac
