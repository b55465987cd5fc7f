#!/usr/bin/env bash
# Kernel variants side by side in one GPU lease: several builds of xtask, each from its own
# commit or working tree, timed on the same machine (engine alone, GPU phases), with PyTorch
# once beside one of them, then `xtask validate` for one. What H100 runs 11 and 12 of
# 2026-11-28 ran (benches/results/2026-11-28-h100-variants.md).
# Set-up here, per variant X (a letter or word):
#   cargo build --release -p xtask && mkdir -p .device/var &&
#   strip -o /tmp/xtask-X target/release/xtask && xz -6 -c /tmp/xtask-X > .device/var/xtask-X.xz
# Variant A is the pack's xtask (benches/device/pack.sh, .device/bin). Then, with
# carry [".device"]: bash benches/device/variants.sh
# Settings: VARIANTS (timed in order; default "B C E A"), WORK (their workloads), TORCH_VARIANT
#   (the one timed with PyTorch on wide first; default A), EXTRA ("X:SETTING ...": variant X on
#   wide with STABLENET_GPU_TILED=SETTING), VALIDATE (default: the fastest at wide), BUDGET
#   (seconds; validate is cut at its end).
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
for f in .device/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
mkdir -p /tmp/x
for f in .device/bin/xtask.xz .device/var/*.xz; do
    b=$(basename "$f" .xz); [ "$b" = xtask ] && b=xtask-A
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" /tmp/x/$b &
done
wait; chmod +x /tmp/x/*; ls /tmp/x
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; date -u
export RUST_LOG=warn
W=${WORK:-peaks-small,mid,wide}
echo "== [$(( $(date +%s) - T0 ))s] torch + A"
timeout -s INT 90 /tmp/x/xtask-${TORCH_VARIANT:-A} bench --no-cpu --python python3 --torch-args "--compile-max-steps 0" --steps 20 --only wide --out $OUT/torch.jsonl 2>&1 | grep -A12 "^| workload" | head -14
for v in ${VARIANTS:-B C E A}; do
    echo "== [$(( $(date +%s) - T0 ))s] variant $v"
    timeout -s INT 40 /tmp/x/xtask-$v bench --no-cpu --no-torch --steps 20 --only $W --out /tmp/v.jsonl 2>&1 | grep -A8 "^| config | kernels"
    python3 -c 'import json,sys
for l in open("/tmp/v.jsonl"):
    r=json.loads(l); r["variant"]=sys.argv[1]; print(json.dumps(r))' $v >> $OUT/variants.jsonl
done
for t in ${EXTRA:-}; do
    echo "== [$(( $(date +%s) - T0 ))s] ${t%%:*} wide ${t#*:}"
    STABLENET_GPU_TILED=${t#*:} timeout -s INT 30 /tmp/x/xtask-${t%%:*} bench --no-cpu --no-torch --steps 20 --only wide --out /tmp/v.jsonl 2>&1 | grep -A3 "^| config | kernels"
done
python3 - "$OUT/variants.jsonl" <<'PY' > /tmp/best
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    ph = r.get("gpu_phases_s") or {}
    print(r["variant"], r["config"], "%.4e" % r["s_per_step"], "fwd %.4e adj %.4e" % (ph.get("forward", 0), ph.get("adjoint", 0)), file=sys.stderr)
w = {r["variant"]: r["s_per_step"] for r in rows if r["config"] == "wide"}
print(min(w, key=w.get))
PY
echo "fastest at wide: $(cat /tmp/best)"; best=${VALIDATE:-$(cat /tmp/best)}
left=$(( ${BUDGET:-280} - ($(date +%s) - T0) ))
echo "== [$(( $(date +%s) - T0 ))s] validate $best (${left}s)"
timeout $(( left > 10 ? left - 5 : 5 )) /tmp/x/xtask-$best validate > $OUT/validate-$best.txt 2>&1
tail -1 $OUT/validate-$best.txt
grep -v "| ok |" $OUT/validate-$best.txt | grep "^| " | grep -v "^| kernels" | head
echo "== [$(( $(date +%s) - T0 ))s] done"
