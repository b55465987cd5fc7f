#!/usr/bin/env bash
# The GPU-only checks, in one go, on a borrowed GPU machine without Rust (benches/README.md, "A
# borrowed GPU machine without Rust"):
# the Vulkan loader, the data, then
#   1. the image network: GPU engine vs PyTorch CUDA eager, time per batch (bench-images);
#   2. the BENCH.md workloads: GPU engine vs PyTorch CUDA eager and torch.compile (bench), and
#      the engine with other step kernels than its default beside it (kernels_ab);
#   3. the image accuracy runs on the GPU (MNIST and Fashion-MNIST, hamiltonian; leapfrog beside
#      them when the GPU is fast enough), sized from step 1's timing to end inside the budget,
#      while `xtask validate` (every kernel against its CPU twin) runs beside them.
# Usage: benches/device/run.sh [BUDGET_SECONDS]   (default 540; everything lands in $OUT)
#        ONLY=bench benches/device/run.sh [BUDGET]  (after a kernel change: bench, kernels_ab and
#        validate; 400 leaves the main bench about 140 s, enough for every line at 5 steps)
# Settings: BENCH_ARGS (say "--steps 20 --only peaks-small,mid,wide,deep-256,deep-1024"),
#   BENCH_SECONDS (the main bench's share), AB (kernels_ab's list: tune (peaks-small, mid and
#   wide tuned, STABLENET_GPU_TUNE=1), tune:SETTING (wide tuned from a STABLENET_GPU_TILED
#   setting), per-example, fused, tiled, and STABLENET_GPU_TILED settings for mid and wide, or
#   for WORKLOADS:SETTING).
# Expects .device/ from benches/device/pack.sh: bin/{stablenet,xtask}.xz, data/*/*.xz, *.deb.
# A dry run here on lavapipe: SOFTWARE=1 BENCH_ARGS=--quick IMAGE_ARGS="--batches 2"
#   TRAIN_ARGS="--train-limit 512 --val-limit 256" OUT=/tmp/dev benches/device/run.sh 300
set -u
T0=$(date +%s)
BUDGET=${1:-540}
OUT=${OUT:-out/device}
mkdir -p "$OUT" .device/runs
X=.device/run/xtask
S=.device/run/stablenet
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
# at_least N SECONDS: SECONDS, or N when less (`timeout 0` would mean no limit at all).
at_least() { echo $(($2 > $1 ? $2 : $1)); }
stage() { echo; echo "== [$(elapsed)s] $*"; }
# bench SECONDS: the BENCH.md workloads, GPU engine vs PyTorch CUDA, cut (SIGINT) after SECONDS.
bench() {
    timeout -s INT "$1" $X bench --no-cpu --python "${PYTHON:-python3}" --torch-args "--compile-max-steps 0" \
        "${soft[@]}" ${BENCH_ARGS:-} --out "$OUT/bench.jsonl"
    $X bench --summarize "$OUT/bench.jsonl" > /dev/null
}
# kernels_ab: the engine alone with other step kernels than its default (GpuNet::with_options),
# beside the main run (whose torch lines are the comparison): mid one example per invocation
# (the kernels before the tiled ones), peaks-small fused instead of tiled and the deep rows
# tiled instead of fused, and mid and wide (or the workloads before a colon:
# peaks-small:invocations=64) with the tiled steps sized or built otherwise
# (STABLENET_GPU_TILED). All in one file, each line with its setting in "ab": the device tool
# brings back at most 8 files.
# kernels_ab END: each run cut at 20 s, and none started within 5 s of END (seconds since the
# epoch), so that what follows keeps its time.
kernels_ab() {
    local end=$1
    : > "$OUT/bench-ab.jsonl"
    ab() { # ab NAME WORKLOADS "VAR=VALUE ..." [CUT_SECONDS, default 20]
        local t=$((end - $(date +%s))) cut=${4:-20}
        # A run writes its line only at its end: none starts that could not get half its cut
        # (tuning times every plan before the line's own steps).
        if [ "$t" -lt 5 ] || [ "$t" -lt $((cut / 2)) ]; then echo "ab $1 $2: skipped, out of time"; return; fi
        # shellcheck disable=SC2086 # one or more VAR=VALUE words
        env $3 timeout -s INT $((t < cut ? t : cut)) $X bench --no-cpu --no-torch "${soft[@]}" ${BENCH_ARGS:-} \
            --only "$2" --out /tmp/ab.jsonl
        python3 -c 'import json, os, sys
for line in (open(sys.argv[2]) if os.path.exists(sys.argv[2]) else []):
    try:
        print(json.dumps(dict(json.loads(line), ab=sys.argv[1])))
    except ValueError:
        pass  # blank, or cut short by the timeout' "$1" /tmp/ab.jsonl >> "$OUT/bench-ab.jsonl"
        rm -f /tmp/ab.jsonl
    }
    for t in ${AB:-tune tune:keep=1 per-example fused tiled fblock=8 wide:keep=1 wide:groups=1024 wide:ablock=8,groups=1024 \
        wide:keep=1,fblock=8,ablock=8,groups=1024 \
        wide:ablock=8,groups=512 wide:fblock=8,ablock=8,groups=1024 wide:fblock=8,ablock=8,groups=512 \
        peaks-small:invocations=64 peaks-small:groups=128 checks=all checks=none invocations=128 \
        groups=512 db=4}; do
        case $t in
            # Kernel tuning (stablenet_gpu::tune) times each plan a few steps, then the chosen
            # one as usual: a workload at a time, each cut at 60 s.
            tune) for w in peaks-small mid wide; do ab tune $w STABLENET_GPU_TUNE=1 60; done ;;
            tune:*) ab "$t" wide "STABLENET_GPU_TUNE=1 STABLENET_GPU_TILED=${t#tune:}" 60 ;;
            per-example) ab per-example mid STABLENET_GPU_KERNELS=per-example ;;
            fused) ab fused peaks-small STABLENET_GPU_KERNELS=fused ;;
            tiled) ab tiled deep-256,deep-1024 STABLENET_GPU_KERNELS=tiled ;;
            *:*) ab "$t" "${t%%:*}" "STABLENET_GPU_TILED=${t#*:}" ;;
            *) ab "$t" mid,wide "STABLENET_GPU_TILED=$t" ;;
        esac
    done
    python3 -c 'import json, sys
print("| ab | config | s/step | forward | adjoint | kernels |")
print("|---|---|---|---|---|---|")
for r in map(json.loads, open(sys.argv[1])):
    ph = r.get("gpu_phases_s") or {}
    f = lambda v: "-" if v is None else "%.3e" % v
    tu = r.get("gpu_tuning")
    chosen = "" if not tu else "; tuned in %.1f s: %s (%s)" % (tu["seconds"], tu["chosen"], ", ".join(
        "%s %s" % (t["setting"], f(t["s_per_step"]) if "s_per_step" in t else t.get("error")) for t in tu["trials"]))
    print("| %s | %s | %s | %s | %s | %s%s |" % (r["ab"], r["config"], f(r.get("s_per_step")), f(ph.get("forward")),
          f(ph.get("adjoint")), r.get("gpu_kernel_sizes"), chosen))' "$OUT/bench-ab.jsonl"
}

main() {
stage "set-up: Vulkan loader, data"
for f in .device/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
mkdir -p .device/run
shopt -s nullglob # no data sets packed: none to unpack
for f in .device/bin/*.xz .device/data/*/*.xz; do
    case $f in
        .device/bin/*) d=.device/run/$(basename "$f") ;;
        *) d=data/${f#.device/data/} ;;
    esac
    mkdir -p "$(dirname "$d")"
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$f" "${d%.xz}" &
done
wait
chmod +x .device/run/*
echo "binaries packed at $(cat .device/bin/COMMIT 2>/dev/null || echo 'an unknown commit')"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
export RUST_LOG=${RUST_LOG:-warn}
soft=()
if [ -n "${SOFTWARE:-}" ]; then soft=(--software); export STABLENET_FALLBACK=1; fi

stage "smoke: is there a Vulkan GPU adapter?"
$X bench --only peaks-small --no-torch --no-cpu --steps 1 "${soft[@]}" --out /tmp/smoke.jsonl 2>&1 | tail -3
if ! grep -q stablenet-gpu /tmp/smoke.jsonl 2>/dev/null; then
    echo "no GPU adapter: diagnostics follow"
    ldconfig -p | grep -i vulkan
    ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
    VK_LOADER_DEBUG=error,warn $X bench --only peaks-small --no-torch --no-cpu --steps 1 --out /tmp/smoke.jsonl 2>&1 | tail -20
    exit 3
fi

if [ "${ONLY:-}" = bench ]; then
    # A rerun after a kernel change: the BENCH.md workloads and validate only.
    stage "bench: BENCH.md workloads, GPU engine vs PyTorch CUDA"
    bench "${BENCH_SECONDS:-$(at_least 60 $(($(left) - 250)))}"
    stage "bench: other step kernels"
    kernels_ab $((T0 + BUDGET - 75))
    stage "validate"
    timeout "$(at_least 1 $(($(left) - 5)))" $X validate > "$OUT/validate.txt" 2>&1
    tail -1 "$OUT/validate.txt"
    stage "done"
    return
fi

stage "1. bench-images: GPU engine vs PyTorch CUDA (16,32,64 channels, N = 2)"
timeout 120 $X bench-images --backend gpu --channels 16,32,64 --steps 2 --batches 30 --python "${PYTHON:-python3}" \
    ${IMAGE_ARGS:-} --out "$OUT/bench-images.jsonl"

stage "2. bench: BENCH.md workloads, GPU engine vs PyTorch CUDA"
bench "$(at_least 120 $((BUDGET / 2 - $(elapsed))))"
kernels_ab $((T0 + BUDGET * 2 / 3))

stage "3. image accuracy runs on the GPU, validate beside them"
window=$(($(left) - 50))
# Epochs per level from the measured time per batch (hamiltonian, 16-32-64, N = 2): an epoch
# at N steps per stage and width c costs about t (N / 2) (c / 16)^2 per batch, 469 batches and
# 10% for the test-set evaluation; concurrent runs share the GPU.
read -r runs_spec < <(python3 - "$OUT/bench-images.jsonl" "$window" <<'EOF'
import json, os, sys
lines = open(sys.argv[1]) if os.path.exists(sys.argv[1]) else []
t = next((r["seconds_per_batch"] for r in map(json.loads, filter(str.strip, lines))
          if r.get("engine") == "stablenet-gpu" and r["integrator"] == "hamiltonian"), 0.05)
window = float(sys.argv[2])
pair = lambda c: 469 * 1.1 * t * (1 + 2) * (c / 16) ** 2  # levels 2, 4: one epoch of each
def plan(runs):
    """Epochs per level for runs [(name, width, cap)] that share the GPU (their work adds up):
    equal epochs for all, then what the capped ones leave goes to the others."""
    epochs, free = {}, list(runs)
    budget = window
    while free:
        e = int(budget / sum(pair(c) for _, c, _ in free))
        capped = [r for r in free if r[2] <= e]
        if not capped:
            epochs.update({r[0]: e for r in free})
            break
        for r in capped:
            epochs[r[0]] = r[2]
            budget -= r[2] * pair(r[1])
            free.remove(r)
    return [(n, c, epochs[n]) for n, c, _ in runs]
ham = [("mnist-hamiltonian", 16, 12), ("fashion-mnist-hamiltonian", 32, 15)]
leap = [("mnist-leapfrog", 16, 12), ("fashion-mnist-leapfrog", 32, 15)]
narrow = [("mnist-hamiltonian", 16, 12), ("fashion-mnist-hamiltonian", 16, 15)]
for runs, least in ((ham + leap, 8), (ham, 6), (narrow, 0)):
    chosen = plan(runs)
    if min(e for _, _, e in chosen) >= least:
        break
# No runs when the window is too short for two epochs of the narrow pair: validate alone.
print(" ".join(f"{n}:{c}:{e}" for n, c, e in chosen if e >= 2) or "none")
EOF
)
[ "$runs_spec" = none ] && runs_spec=""
echo "t/batch from step 1; window ${window}s; runs (experiment:first width:epochs per level): $runs_spec"
pids=()
for spec in $runs_spec; do
    IFS=: read -r name c e <<< "$spec"
    mkdir -p ".device/runs/$name"
    $S train --config "experiments/images/$name.toml" --backend gpu --channels "$c,$((2 * c)),$((4 * c))" \
        --epochs "$e" ${TRAIN_ARGS:-} --out ".device/runs/$name/model.safetensors" --metrics ".device/runs/$name/metrics.jsonl" \
        > ".device/runs/$name/train.log" 2>&1 &
    pids+=($!)
done
timeout "$(at_least 30 $((window + 20)))" nice -n 10 $X validate > "$OUT/validate.txt" 2>&1 &
vpid=$!
while [ "$(left)" -gt 45 ] && [ ${#pids[@]} -gt 0 ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 2; done
for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
for spec in $runs_spec; do
    name=${spec%%:*}
    echo "-- $name: $(tail -2 ".device/runs/$name/train.log")"
    m=.device/runs/$name/model.safetensors
    [ -f "$m" ] || m=.device/runs/$name/model.ckpt.safetensors
    [ -f "$m" ] && $S eval --model "$m" --data "${name%-*}" --json > ".device/runs/$name/eval.json" 2>&1
    cat ".device/runs/$name/eval.json" 2>/dev/null
done
m=.device/runs/mnist-hamiltonian/model.safetensors
[ -f "$m" ] && $S plot misclassified --model "$m" --out .device/runs/mnist-hamiltonian/misclassified.png
kill -INT "$vpid" 2>/dev/null
wait "$vpid"
tail -3 "$OUT/validate.txt"
for d in .device/runs/*/; do [ -f "$d/model.safetensors" ] && rm -f "$d/model.ckpt.safetensors"; done
tar czf "$OUT/runs.tar.gz" -C .device runs
stage "done"
}
main 2>&1 | tee -a "$OUT/log.txt"
