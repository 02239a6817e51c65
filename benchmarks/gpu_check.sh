#!/usr/bin/env bash
# hear_vec on one CUDA machine, in one go (under 8 minutes on one H100):
#   1. the CUDA tests (pytest -m cuda: every CUDA parametrization and the compiled Triton
#      kernels against their torch references),
#   2. a host-sync check: env steps and PPO iterations under
#      torch.cuda.set_sync_debug_mode("error"),
#   3. throughput at num_envs 256..8192 with SI-SDR + STOI + ESTOI every step on 2-s clips:
#      eager, CUDA graphs, torch.compile; acting and PPO training at 4096 envs.
# Everything lands under one folder:  bash benchmarks/gpu_check.sh [OUT_DIR]
# (default gpu_check_out/): gpu_check.log (the timeline), summary.txt (one line per stage),
# <stage>.log, cuda_tests.xml, sync_check.json, *.json from benchmarks/throughput.py and
# RESULTS_gpu.md (markdown tables with the exact commands), summary.md (headline numbers).
# Each stage has a time cap and the whole run a budget (BUDGET seconds, default 450): a stage
# that would not fit is skipped and said so; a failing stage does not stop the others.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
BUDGET="${BUDGET:-450}"
START=$(date +%s)
LOG="$OUT/gpu_check.log"
: > "$OUT/summary.txt"
export PYTHONUNBUFFERED=1

log() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# stage NAME CAP_SECONDS COMMAND...: run with a cap, never past the budget
stage() {
  local name=$1 cap=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < 30 )); then
    log "SKIP $name: ${left}s left of the ${BUDGET}s budget"
    echo "$name: skipped (budget)" >> "$OUT/summary.txt"
    return 0
  fi
  if (( cap > left - 10 )); then cap=$(( left - 10 )); fi
  log "START $name (cap ${cap}s): $*"
  timeout --kill-after=10 "$cap" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local what="rc=$rc"
  if (( rc == 124 || rc == 137 )); then what="rc=$rc (hit its ${cap}s cap)"; fi
  log "END $name $what"
  echo "$name: $what" >> "$OUT/summary.txt"
  return 0
}

TP=(benchmarks/throughput.py --device cuda --segment-seconds 2 --stoi-weight 1
    --estoi-weight 1 --quality-interval 1 --results-md "$OUT/RESULTS_gpu.md")

log "hear_vec gpu_check -> $OUT (budget ${BUDGET}s)"
stage environment 60 bash -c "nvidia-smi; $PY -c 'import torch, triton; \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\", triton.__version__); \
print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory >> 20, \"MiB\")'"
stage cuda_tests 170 "$PY" -m pytest -q -m cuda tests -p no:cacheprovider \
  --junitxml="$OUT/cuda_tests.xml"
stage sync_check 75 "$PY" benchmarks/throughput.py --sync-check --device cuda --num-envs 256 \
  --segment-seconds 2 --stoi-weight 1 --estoi-weight 1 --quality-interval 1 \
  --json "$OUT/sync_check.json"
stage env_eager 100 "$PY" "${TP[@]}" --num-envs 256 1024 4096 8192 --steps 12 --repeats 3 \
  --tag cuda-env-eager --json "$OUT/env_eager.json"
stage env_cudagraphs 100 "$PY" "${TP[@]}" --cudagraphs --num-envs 256 1024 4096 8192 \
  --warmup-steps 9 --steps 12 --repeats 3 --no-breakdown --tag cuda-env-cudagraphs \
  --json "$OUT/env_cudagraphs.json"
stage train_ppo_cudagraphs 80 "$PY" "${TP[@]}" --mode train --cudagraphs --num-envs 4096 \
  --repeats 2 --tag cuda-train-ppo-cudagraphs --json "$OUT/train_ppo_cudagraphs.json"
stage act_eager 45 "$PY" "${TP[@]}" --mode act --num-envs 4096 --steps 12 --repeats 2 \
  --no-breakdown --tag cuda-act-eager --json "$OUT/act_eager.json"
stage env_compiled 150 "$PY" "${TP[@]}" --compile --num-envs 4096 --warmup-steps 6 \
  --steps 12 --repeats 3 --no-breakdown --tag cuda-env-compiled --json "$OUT/env_compiled.json"

stage headline 30 "$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| run | num_envs | env-steps/s | MB/env |", "|---|---|---|---|"]
for name in ("env_eager", "env_cudagraphs", "env_compiled", "act_eager", "train_ppo_cudagraphs"):
    path = out / f"{name}.json"
    if not path.exists():
        lines.append(f"| {name} | - | (no result) | - |")
        continue
    for r in json.loads(path.read_text())["results"]:
        if "error" in r:
            lines.append(f"| {name} | {r['num_envs']} | {r['error'][:60]} | - |")
        else:
            lines.append(f"| {name} | {r['num_envs']} | {r['env_steps_per_s']:,.0f} | "
                         f"{r['memory_per_env_mb']:.2f} |")
sync = out / "sync_check.json"
if sync.exists():
    lines += ["", "sync check: " + json.dumps(json.loads(sync.read_text()))]
text = "\n".join(lines)
(out / "summary.md").write_text(text + "\n")
print(text)
PYEOF
log "done in $(( $(date +%s) - START ))s; see $OUT/summary.txt and $OUT/summary.md"
cat "$OUT/summary.txt"
