#!/usr/bin/env bash
# The GPU run of issue 35 as one script, from the repository root:
#
#   bash benchmarks/gpu.sh [--dry] [REPORT.md]
#
# 1. `python -m faujax.bench` (jit, bf16 compute, float32 parameters, batch 64 and 256) for MACG
#    (configs/macg/bp4d.py, ResNet-50, 224 px), ME-GraphAU (configs/me_graphau/bp4d.py, stage 2,
#    ResNet-50, 224 px) and Emotion-GCN (configs/emotion_gcn/affectnet.py, DenseNet-121, 227 px):
#    images/s, TFLOP/s, model FLOP utilisation, compile time, peak memory;
# 2. `python -m faujax.predict --benchmark` on real photos (scikit-image's astronaut, matplotlib's
#    grace_hopper; synthetic faces when neither package is installed) with a ResNet-50 ME-GraphAU
#    model of RANDOM weights (benchmarks/random_run.py);
# 3. benchmarks/torchvision_comparison.py (ResNet-50, 224 px, batch 16) when torch and torchvision
#    import (its torch side runs on the host CPU: that script has no device option); reported as
#    skipped, with the reason, otherwise;
# 4. one markdown report: REPORT.md, else $OUT/gpu_report.md when $OUT is set, else
#    ./gpu_report.md; the raw files beside it in <report stem>_raw/.
#
# --dry (or DRY=1): small sizes (64 px, batch 2, one timed step, a small CNN trunk) so that every
# stage runs end to end on a CPU in about a minute; tests/test_gpu_script.py runs it.
# PYTHON=... picks the interpreter (default: .venv/bin/python if present, else python).
# Every stage but the optional PyTorch reference stops the script with a nonzero exit on failure.
set -euo pipefail

dry="${DRY:-0}"
report=""
for arg in "$@"; do
  case "$arg" in
    --dry) dry=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "gpu.sh: unknown option $arg" >&2; exit 2 ;;
    *) report="$arg" ;;
  esac
done
[[ "$dry" == "0" ]] && dry=0 || dry=1
if [[ -z "$report" ]]; then
  if [[ -n "${OUT:-}" ]]; then report="$OUT/gpu_report.md"; else report="gpu_report.md"; fi
fi
if [[ -n "${PYTHON:-}" ]]; then py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then py=.venv/bin/python
else py=python
fi
[[ -f faujax/bench.py ]] || { echo "gpu.sh: run it from the repository root" >&2; exit 2; }

mkdir -p "$(dirname "$report")"
raw="${report%.md}_raw"
rm -rf "$raw"
mkdir -p "$raw"
raw="$(cd "$raw" && pwd)"
: > "$raw/stages.tsv"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# run NAME LOG CMD...: runs CMD with its output in LOG, records its seconds; on failure prints the
# log's tail and exits with CMD's status.
run() {
  local name="$1" log="$2" start=$SECONDS status=0
  shift 2
  local cmd="$*"
  (( ${#cmd} > 300 )) && cmd="${cmd:0:300}..."
  echo "== $name: $cmd"
  "$@" > "$log" 2>&1 || status=$?
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$raw/stages.tsv"
  if (( status != 0 )); then
    echo "gpu.sh: stage '$name' failed (exit $status); last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit "$status"
  fi
  echo "   done in $((SECONDS - start)) s"
}

# --- the machine ------------------------------------------------------------------------------
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi > "$raw/nvidia-smi.txt" 2>&1 || echo "(nvidia-smi failed)" >> "$raw/nvidia-smi.txt"
fi
run environment "$raw/env.log" "$py" benchmarks/gpu_report.py --env "$raw/env.json"

# --- 1. train and eval steps ------------------------------------------------------------------
if (( dry )); then
  sizes=2; steps=1
  small=(--config.augment.image_size=64 --config.model.backbone.name=small_cnn)
else
  sizes=64,256; steps=10
  small=()
fi
bench() {
  local name="$1" config="$2"
  run "bench $name" "$raw/bench_$name.log" "$py" -m faujax.bench --config "$config" \
    --modes jit --batch_sizes "$sizes" --steps "$steps" --config.model.dtype=bfloat16 \
    ${small[@]+"${small[@]}"} --out "$raw/bench_$name.json"
}
bench macg configs/macg/bp4d.py
bench me_graphau configs/me_graphau/bp4d.py:stage2
bench emotion_gcn configs/emotion_gcn/affectnet.py

# --- 2. inference on photos -------------------------------------------------------------------
photos="$raw/photos"
mkdir -p "$photos"
"$py" - "$photos" <<'EOF'
import shutil, sys
out = sys.argv[1]
try:
  from skimage import data, io
  io.imsave(f'{out}/astronaut.png', data.astronaut(), check_contrast=False)
except ImportError as e:
  print(f'no astronaut photo: {e}')
try:
  from matplotlib import cbook
  shutil.copy(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False), f'{out}/grace_hopper.jpg')
except (ImportError, OSError, ValueError) as e:
  print(f'no grace_hopper photo: {e}')
EOF
if compgen -G "$photos/*" > /dev/null; then
  inputs=("$photos"); inputs_text="$(cd "$photos" && ls | tr '\n' ' ')"
else
  inputs=(); inputs_text="synthetic faces (neither scikit-image nor matplotlib is installed)"
fi
if (( dry )); then
  predict_overrides=(--config.model.backbone.name=small_cnn); predict_batch=2
else
  predict_overrides=(); predict_batch=32
fi
run "predict model (random weights)" "$raw/random_run.log" "$py" benchmarks/random_run.py \
  --config configs/me_graphau/bp4d.py:stage1 --out "$raw/predict_run" \
  ${predict_overrides[@]+"${predict_overrides[@]}"}
run "predict --benchmark" "$raw/predict.log" "$py" -m faujax.predict \
  --checkpoint "$raw/predict_run" --benchmark --batch_size "$predict_batch" \
  ${inputs[@]+"${inputs[@]}"}
cat "$raw/predict.log"
"$py" - "$raw" "$predict_batch" "$inputs_text" <<'EOF'
import json, sys
raw, batch, inputs = sys.argv[1], int(sys.argv[2]), sys.argv[3].strip()
line = [l for l in open(f'{raw}/random_run.log') if l.startswith('random-weights run: ')][-1]
fields = json.loads(line.split(': ', 1)[1])
json.dump({**fields, 'batch_size': batch, 'inputs': inputs, 'weights': 'random'},
          open(f'{raw}/predict_run.json', 'w'), indent=1)
EOF

# --- 3. the PyTorch reference (optional) ------------------------------------------------------
if (( dry )); then cases=resnet50:64:2; pairs=1; tsteps=1; else cases=resnet50:224:16; pairs=1; tsteps=2; fi  # torch runs on the host CPU here
if reason="$("$py" -c 'import torch, torchvision' 2>&1)"; then
  start=$SECONDS
  echo "== torchvision reference"
  if "$py" benchmarks/torchvision_comparison.py --cases "$cases" --pairs "$pairs" \
      --steps "$tsteps" --json "$raw/torch.json" > "$raw/torch.log" 2>&1; then
    echo "   done in $((SECONDS - start)) s"
  else
    echo "benchmarks/torchvision_comparison.py failed (exit $?): $(tail -n 1 "$raw/torch.log")" \
      > "$raw/torch_skipped.txt"
    rm -f "$raw/torch.json"
  fi
  printf '%s\t%d\n' "torchvision reference" $((SECONDS - start)) >> "$raw/stages.tsv"
else
  echo "torch / torchvision do not import: $(echo "$reason" | tail -n 1)" > "$raw/torch_skipped.txt"
  echo "== torchvision reference skipped: $(cat "$raw/torch_skipped.txt")"
fi

printf '%s\t%d\n' "all stages before the report (budget 480 on a GPU)" "$SECONDS" >> "$raw/stages.tsv"

# --- 4. the report ----------------------------------------------------------------------------
dry_flag=()
(( dry )) && dry_flag=(--dry)
run report "$raw/report.log" "$py" benchmarks/gpu_report.py --raw "$raw" --out "$report" \
  ${dry_flag[@]+"${dry_flag[@]}"}
echo "report: $report (raw files in $raw), $SECONDS s in all"
