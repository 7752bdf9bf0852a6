"""`w2s`: generate one answer, serve the proxy, align a JSONL file, probe an upstream, view a trace
file, or build and train a guide.

Every error a user can cause (bad config, missing model, unknown route) is one
line on stderr and exit status 2, not a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from w2s.proxy.core.errors import ConfigError, W2SError
from w2s.proxy.core.types import Prompt, SearchResult


def _search_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search overrides")
    g.add_argument("-w", "--w", type=int, help="beams kept per round (W)")
    g.add_argument("-k", "--k", type=int, help="continuations per beam (K)")
    g.add_argument("-l", "--l", type=_chunk_len, default=argparse.SUPPRESS, help="chunk length in upstream tokens (L); 'none' = Best-of-N")
    g.add_argument("--max-tokens", type=int, help="max upstream tokens per answer")
    g.add_argument("--seed", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("-n", "--n", type=int, help="distinct answers to print")


def _chunk_len(v: str):
    return None if v.lower() in ("none", "inf", "null") else int(v)


def _overrides(a: argparse.Namespace) -> dict:
    out = {}
    for key in ("w", "k", "max_tokens", "seed", "temperature", "top_p", "n"):
        v = getattr(a, key, None)
        if v is not None:
            out[key] = v
    if getattr(a, "l", "unset") != "unset":
        out["l"] = a.l
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="w2s", description="Weak-to-strong search proxy")
    p.add_argument("--config", "-c", help="config file (default: ./config.yaml, or $W2S_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--threads", type=int, help="torch intra-op threads (overrides torch_threads in config)")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="run one guided search and print the answer")
    g.add_argument("prompt", nargs="?", help="raw completion prompt")
    g.add_argument("--messages", help="JSON file with a list of chat messages (instead of PROMPT)")
    g.add_argument("--model", "--route", dest="route", help="route name from config (default: default_route)")
    g.add_argument("--trace", action="store_true", help="print every round as a table")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--trace-json", metavar="FILE", help="write the search trace (the page's schema) to FILE")
    _search_flags(g)

    s = sub.add_parser("serve", help="run the OpenAI/Anthropic-compatible server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)

    b = sub.add_parser("batch", help="align a JSONL file of prompts")
    b.add_argument("input")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--model", "--route", dest="route")
    b.add_argument("--concurrency", type=int, default=1, help="items in flight (with --ray: per worker)")
    b.add_argument("--url", help="use a running proxy instead of loading models here")
    b.add_argument("--retry-failed", action="store_true")
    b.add_argument("--no-progress", action="store_true")
    # Also accepted after the subcommand; SUPPRESS keeps an unset one from hiding the global --config.
    b.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file (as the global --config)")
    b.add_argument("--api-key", help="API key for --url (default: $W2S_API_KEY)")

    b.add_argument("--trace", action="store_true", help="every output body carries its search trace (w2s.trace)")
    r = b.add_argument_group("Ray cluster (pip install 'w2s-proxy[ray]')")
    r.add_argument("--ray", action="store_true",
                   help="run the items on a Ray cluster, one engine per worker; this process writes the output")
    r.add_argument("--ray-address", help="the cluster (default: RAY_ADDRESS, else one started on this machine "
                                         "with `ray start`, else a new local one)")
    r.add_argument("--ray-workers", type=int, help="worker actors (default: as many as the cluster's CPUs hold)")
    r.add_argument("--ray-cpus", type=float, help="CPUs each worker reserves (default: its torch threads, --threads)")
    r.add_argument("--ray-gpus", type=float, help="GPUs each worker reserves (default 0)")
    r.add_argument("--ray-task-retries", type=int, default=2,
                   help="times Ray re-runs an item whose worker died, before it is an error line (default 2)")

    c = sub.add_parser("check", help="probe a configured upstream: what it really does, and the config to use")
    c.add_argument("upstream", help="an `upstreams:` name from config")

    v = sub.add_parser("view", help="open a trace file in the search page, offline (no server, no models)")
    v.add_argument("file", help="a trace (--trace-json), a response with w2s.trace, or batch output")
    v.add_argument("-o", "--output", help="the HTML file to write (default: w2s-view-NAME.html in the temp dir)")
    v.add_argument("--no-open", action="store_true", help="only write the page; do not start a browser")
    _train_parser(sub)
    _prefs_parser(sub)
    return p


def _train_parser(sub) -> None:
    t = sub.add_parser("train-guide", help="train a guide from preference pairs: a pair (LoRA, DPO) or a reward model")
    t.add_argument("prefs", help="JSONL: {prompt, chosen, rejected}, plain strings or chat messages")
    t.add_argument("--model", required=True, help="the small model to tune: a models: name (the untuned side)")
    t.add_argument("--out", required=True, help="run directory: adapter, checkpoints, guide.yaml (rerun to resume)")
    t.add_argument("--max-steps", type=int, help="optimizer steps (default: --epochs over the training pairs)")
    t.add_argument("--epochs", type=float, default=3.0, help="without --max-steps (default 3)")
    t.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    t.add_argument("--lr", type=float, default=5e-4, help="learning rate (default 5e-4)")
    t.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    t.add_argument("--lora-r", type=int, default=16)
    t.add_argument("--lora-alpha", type=int, default=32)
    t.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations and checkpoints")
    t.add_argument("--held-out", type=float, default=0.1, help="fraction of pairs held out (default 0.1)")
    t.add_argument("--max-length", type=int, default=1024, help="skip pairs longer than this many tokens (0 = none)")
    t.add_argument("--system", help="the guide's system prompt (as guides.<g>.<side>.system); default: the prompt's")
    t.add_argument("--template", help="the guide's prompt template (as guides.<g>.<side>.template)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--kind", choices=("dpo", "reward-model"), default="dpo",
                   help="dpo: a guide pair (default); reward-model: a LoRA + scalar head (TRL's RewardTrainer)")
    t.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file (as the global --config)")


def _prefs_parser(sub) -> None:
    m = sub.add_parser("make-prefs", help="sample answers through a route and turn a judge function into preference pairs")
    m.add_argument("prompts", help="JSONL: {id, prompt} or {id, messages} (the `w2s batch` simple form)")
    m.add_argument("--route", "--model", dest="route", required=True, help="route to sample from")
    m.add_argument("--judge", required=True, help="MODULE:FUNCTION taking an answer's text, returning a float")
    m.add_argument("--out", required=True, help="preference pairs JSONL (rebuilt from the samples at every run)")
    m.add_argument("-n", "--n", type=int, default=4, help="answers per prompt (default 4)")
    m.add_argument("--margin", type=float, default=0.0, help="keep a pair only if best - worst judge score > this")
    m.add_argument("--samples", help="the resumable log of answers and scores (default OUT.samples.jsonl)")
    m.add_argument("--concurrency", type=int, default=1)
    m.add_argument("--seed", type=int, help="seed per prompt: this + the prompt's line number")
    m.add_argument("--no-progress", action="store_true")
    m.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file (as the global --config)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        _quiet_libraries()
    try:
        if args.cmd == "view":  # needs no config: a file and the page
            return _view(args)
        from w2s.proxy.core.config_load import load_config

        cfg = load_config(args.config)
        if args.threads is not None:
            if args.threads < 1:
                raise ConfigError("--threads: must be 1 or more")
            cfg.torch_threads = args.threads
        return _run(cfg, args)
    except W2SError as e:
        print(f"w2s: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("w2s: interrupted", file=sys.stderr)
        return 130


def _run(cfg, args) -> int:
    """The subcommand; each imports its heavy parts (torch, TRL) only when it runs."""
    if args.cmd == "generate":
        return asyncio.run(_generate(cfg, args))
    if args.cmd == "serve":
        from w2s.proxy.server.app import serve

        serve(cfg, host=args.host or cfg.server.host, port=args.port or cfg.server.port)
        _exit_now(0)
    if args.cmd == "batch":
        from w2s.proxy.batch.run import run_batch_cli

        return run_batch_cli(cfg, args)
    if args.cmd == "check":
        return asyncio.run(_check(cfg, args.upstream))
    if args.cmd == "make-prefs":
        from w2s.proxy.batch.prefs import make_prefs_cli

        return make_prefs_cli(cfg, args)
    from w2s.proxy.train.run import train_guide_cli  # train-guide

    return train_guide_cli(cfg, args)


def _exit_now(status: int) -> None:
    """The server has drained and closed everything: exit without the interpreter's teardown,
    which frees torch and the models object by object (4-5 s measured on this project's 2-core
    machine) and would only hold up an orchestrator waiting out its SIGTERM grace period."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:
        pass


def _prompt(args) -> Prompt:
    """PROMPT, or the --messages file."""
    if args.messages:
        try:
            with open(args.messages) as f:
                messages = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise W2SError(f"cannot read messages file {args.messages}: {e}") from None
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise W2SError("--messages must be a JSON list of {role, content} objects")
        return Prompt.chat(messages)
    if args.prompt is not None:
        return Prompt.raw(args.prompt)
    raise W2SError("give a PROMPT or --messages FILE")


async def _generate(cfg, args) -> int:
    from w2s.proxy.engine import Engine  # torch: only for the commands that run models here

    prompt = _prompt(args)
    if args.trace_json and not Path(args.trace_json).resolve().parent.is_dir():
        raise W2SError(f"--trace-json: no such directory for {args.trace_json}")
    engine = Engine(cfg)
    plan = engine.plan(args.route, _overrides(args))  # a bad route or flag fails before loading anything
    t0 = time.perf_counter()
    try:
        await engine.start()
        t_load = time.perf_counter() - t0
        await engine.check_context(plan, prompt)  # a prompt that cannot fit: the server's 400, said as one line
        result = await engine.run(plan, prompt)
    finally:
        await engine.aclose()
    wall = time.perf_counter() - t0
    if args.trace_json:
        _write_trace(args.trace_json, result, plan, prompt)
    if args.json:
        import dataclasses

        out = dataclasses.asdict(result)
        out["seconds"] = {"load": t_load, "total": wall}
        print(json.dumps(out, indent=2))
        return 0
    if args.trace:
        print(format_trace(result), file=sys.stderr)
    for i, a in enumerate(result.answers):
        if len(result.answers) > 1:
            print(f"--- answer {i + 1} (score {a.score:.3f})" if a.score is not None else f"--- answer {i + 1}")
        print(a.text)
    print(
        f"[{plan.name}: {result.mode}, {len(result.rounds)} rounds, {result.upstream_completion_tokens} upstream tokens "
        f"in {result.upstream_calls} calls, {result.scorer_tokens} scorer tokens, load {t_load:.1f}s, total {wall:.1f}s]",
        file=sys.stderr,
    )
    return 0


async def _check(cfg, name: str) -> int:
    """Exit status 0 only when the upstream can run CBS as configured."""
    from w2s.providers.probes import check
    from w2s.providers.registry import make_sampler
    from w2s.proxy.runtime.pool import ModelPool

    if name not in cfg.upstreams:
        raise ConfigError(f"unknown upstream {name!r} (configured: {', '.join(sorted(cfg.upstreams)) or 'none'})")
    pool = ModelPool(cfg.models, frozenset(), cfg.torch_threads)
    sampler = make_sampler(name, cfg.upstreams[name], pool)
    try:
        for model in sampler.model_names:
            await pool.run(pool.get, model)
        report = await check(sampler)
    finally:
        await sampler.aclose()
        pool.close()
    print("\n".join(report.lines()))
    return 0 if report.blocking is None else 1
def _write_trace(path: str, result: SearchResult, plan, prompt: Prompt) -> None:
    from w2s.proxy.api.job import Job
    from w2s.proxy.api.trace import trace_body

    body = trace_body(result, Job(plan, prompt, trace=True))
    try:
        Path(path).write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise W2SError(f"cannot write {path}: {e.strerror or e}") from None


def _view(args) -> int:
    """Write the page around the file and open it: `w2s view FILE`."""
    import tempfile
    import webbrowser

    from w2s.proxy.api.trace import READABLE_VERSIONS, traces_in
    from w2s.proxy.server.ui.standalone import standalone_html

    src = Path(args.file)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise W2SError(f"cannot read {src}: {getattr(e, 'strerror', None) or e}") from None
    found = [t for _, t in traces_in(text)]
    if not found:
        raise W2SError(f"{src}: holds no w2s search trace (write one with `w2s generate --trace-json`, "
                       "\"w2s\": {\"trace\": true} or `w2s batch --trace`)")
    unknown = sorted({str(t.get("version")) for t in found if t.get("version") not in READABLE_VERSIONS})
    if unknown:
        raise W2SError(f"{src}: trace version {', '.join(unknown)}; this w2s reads versions "
                       f"{', '.join(map(str, READABLE_VERSIONS))}")
    out = Path(args.output) if args.output else Path(tempfile.gettempdir()) / f"w2s-view-{src.stem}.html"
    try:
        out.write_text(standalone_html(src.name, text), encoding="utf-8")
    except OSError as e:
        raise W2SError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"w2s view: {len(found)} trace(s) from {src} -> {out}", file=sys.stderr)
    if not args.no_open and not webbrowser.open(out.resolve().as_uri()):
        print(f"w2s view: no browser to start here; open {out} in one", file=sys.stderr)
    return 0


def format_trace(result: SearchResult, width: int = 70) -> str:
    """A search trace as a readable table (`w2s generate --trace`)."""
    lines = [f"{'round':>5} {'cand':>4} {'parent':>6} {'score':>8} {'kept':>4} {'done':>4}  text", "-" * (40 + width)]
    for rd in result.rounds:
        order = sorted(range(len(rd.candidates)), key=lambda i: -(rd.candidates[i].score or 0.0))
        for i in order:
            c = rd.candidates[i]
            text = c.text.replace("\n", "\\n")
            if len(text) > width:
                text = "…" + text[-(width - 1):]  # the end is what this round added
            score = f"{c.score:8.3f}" if c.score is not None else f"{'-':>8}"
            parent = "-" if c.parent is None else str(c.parent)
            lines.append(f"{rd.index:>5} {i:>4} {parent:>6} {score} {'*' if c.kept else '':>4} "
                         f"{'yes' if c.finished else '':>4}  {text}")
        extra = f", {rd.failed_chunks} failed" if rd.failed_chunks else ""
        lines.append(f"      round {rd.index}: {rd.upstream_completion_tokens} upstream tokens, {rd.scorer_tokens} scorer tokens, "
                     f"sample {rd.sample_seconds:.2f}s, score {rd.score_seconds:.2f}s{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
