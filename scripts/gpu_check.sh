#!/usr/bin/env bash
# GPU checks for a machine with CUDA (not part of CI): one GPU in fp32 and bf16-mixed, DDP on the
# visible GPUs, each model's default config, data on the device or not, torch.compile, the text
# families (bf16 too), DP-SGD (privacy=dp). Prints one line per run: accuracy and times.
# usage: bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
out=${1:-outputs/gpu_check}
mkdir -p "$out"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
report() {
  python3 - "$@" <<'PY'
import json, sys
label, run_dir = sys.argv[1], sys.argv[2]
wall = float(sys.argv[4]) - float(sys.argv[3])
try:
    s = json.load(open(f"{run_dir}/summary.json"))
except FileNotFoundError:
    print(f"{label:44s} no summary.json"); raise SystemExit
m = s["metrics"]
print(f"{label:44s} {s['status']:10s} test/acc={m.get('test/acc', float('nan')):.4f} "
      f"train+test={s.get('duration_s', 0):6.1f}s wall={wall:6.1f}s epochs={s.get('epochs')}")
PY
}
run() {
  local label=$1; shift
  local dir="$out/$(echo "$label" | tr ' =/[],' '______')"
  local start=$EPOCHREALTIME
  python3 -m dnnexp train "$@" trainer.progress_bar=false "hydra.run.dir=$dir" > "$dir.log" 2>&1
  local rc=$?
  local end=$EPOCHREALTIME
  [ $rc -eq 0 ] || { echo "$label: exit $rc"; tail -5 "$dir.log"; }
  report "$label" "$dir" "$start" "$end"
}
run "gpu mlp" trainer=gpu
run "gpu mlp bf16-mixed" trainer=gpu trainer.precision=bf16-mixed
run "gpu mlp batch 256" trainer=gpu data.batch_size=256
for model in cnn resnet resnext densenet rnn lstm gru; do
  run "gpu $model" trainer=gpu model=$model
done
run "gpu mlp data_on_device=never" trainer=gpu trainer.data_on_device=never
run "gpu mlp compile" trainer=gpu trainer.compile=true
run "gpu private mlp (privacy=dp)" trainer=gpu experiment=private_mlp  # Poisson batches drawn on the device
python3 scripts/toy_texts.py "$out/reviews.csv" --rows 4000 > /dev/null
for model in gru textcnn transformer; do
  run "gpu text $model" trainer=gpu data=text "data.path=$out/reviews.csv" model=$model
done
run "gpu text transformer bf16-mixed" trainer=gpu data=text "data.path=$out/reviews.csv" model=transformer trainer.precision=bf16-mixed
run "gpu resnext dropout" trainer=gpu model=resnext reg=dropout
run "gpu resnext bf16-mixed" trainer=gpu model=resnext trainer.precision=bf16-mixed
run "ddp on all gpus resnext" trainer=ddp model=resnext
