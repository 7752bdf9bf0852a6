"""`w2s make-prefs PROMPTS.jsonl --route R --judge MODULE:FUNCTION --out PREFS.jsonl`.

N answers per prompt from any route (a pass-through route over the local
upstream, the small model itself, or a remote API: N independent draws; a
guided route: the search's N best distinct answers), each scored by the user's
judge, and the best and the worst kept as a preference pair when their scores
differ by more than --margin. A preference written as code becomes data that
`w2s train-guide` turns into a guide.

Input lines are `w2s batch` lines (`{"id", "prompt"}`, `{"id", "messages"}`, or
the OpenAI batch form); each runs exactly as `w2s batch` would run it, with
`n` (and, given --seed, `seed`) set unless the line sets them.

Resume like `w2s batch`: every prompt's answers and scores are appended and
fsync'd to the samples log as they arrive (proxy/batch/pairs.py), rerunning
skips the prompts already there and cuts a half-written last line, and the
pairs file is rebuilt from the log at the end of every run, interrupted or not
(so a new --margin costs no sampling). A prompt that failed is reported and
runs again next time.

Exit status: 0 every prompt sampled; 1 some prompt failed or some input line
was malformed; 2 a usage error; 130 interrupted.
"""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from w2s.proxy.batch.input import BatchInput, BatchItem, read_input
from w2s.proxy.batch.judge import Judge, JudgeError, judge_all, load_judge
from w2s.proxy.batch.output import OutputFile
from w2s.proxy.batch.pairs import PairStats, rebuild_pairs, sample_identity
from w2s.proxy.batch.report import Progress
from w2s.proxy.core.config import Config
from w2s.proxy.core.errors import W2SError


@dataclass
class PrefsOptions:
    input: Path
    out: Path
    route: str
    judge: str  # MODULE:FUNCTION
    n: int = 4
    margin: float = 0.0
    samples: Path | None = None  # default: OUT.samples.jsonl
    concurrency: int = 1
    seed: int | None = None
    progress: bool = True

    @classmethod
    def from_args(cls, args) -> "PrefsOptions":
        return cls(Path(args.prompts), Path(args.out), args.route, args.judge, args.n, args.margin,
                   Path(args.samples) if args.samples else None, args.concurrency, args.seed, not args.no_progress)

    @property
    def samples_path(self) -> Path:
        return self.samples or self.out.with_name(self.out.name + ".samples.jsonl")


@dataclass
class PrefsReport:
    sampled: int = 0  # prompts sampled and judged in this run
    skipped: int = 0  # already in the samples log
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    malformed: int = 0
    pairs: PairStats = field(default_factory=PairStats)

    def lines(self, opts: PrefsOptions) -> list[str]:
        p = self.pairs
        return [f"w2s make-prefs: {self.sampled} prompts sampled, {self.skipped} already in {opts.samples_path}, "
                f"{len(self.failed)} failed, {self.malformed} malformed input lines",
                f"  {opts.out}: {p.pairs} pairs ({p.below_margin} prompts within the margin {opts.margin}, "
                f"{p.too_few} with fewer than 2 distinct answers, {p.not_sampled} not sampled yet)"]


def make_prefs_cli(cfg: Config, args) -> int:
    opts = PrefsOptions.from_args(args)
    report = PrefsReport()
    try:
        asyncio.run(make_prefs(cfg, opts, report))
    except KeyboardInterrupt:
        print("w2s make-prefs: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        for line in report.lines(opts):
            print(line, file=sys.stderr)
    return 1 if (report.failed or report.malformed) else 0


async def make_prefs(cfg: Config, opts: PrefsOptions, report: PrefsReport, engine=None) -> PrefsReport:
    """Sample what is left, then rebuild the pairs. `engine`: a started Engine to use (and leave open)."""
    if opts.n < 2:
        raise W2SError("-n must be 2 or more: a pair needs a best and a worst answer")
    if opts.concurrency < 1:
        raise W2SError("--concurrency must be >= 1")
    cfg.route(opts.route)  # an unknown route fails before anything runs
    judge = load_judge(opts.judge)
    batch = _read(opts.input, report)
    log = OutputFile(opts.samples_path, identify=sample_identity)
    state = log.open()
    try:
        if state.corrupt:
            raise W2SError(f"{opts.samples_path}: line(s) {', '.join(map(str, state.corrupt[:10]))} are not "
                           "samples records; fix or remove them, then rerun")
        todo = [it for it in batch.items if it.custom_id not in state.ok]
        report.skipped = len(batch.items) - len(todo)
        if todo:
            await _sample_all(cfg, opts, todo, judge, log, report, engine)
    finally:
        log.close()
        report.pairs = rebuild_pairs(opts.samples_path, opts.out, [it.custom_id for it in batch.items], opts.margin)
    return report


def _read(path: Path, report: PrefsReport) -> BatchInput:
    try:
        batch = read_input(path)
    except OSError as e:
        raise W2SError(f"cannot read input {path}: {e.strerror}") from None
    for bad in batch.bad:
        print(f"w2s make-prefs: {path}:{bad.line}: {bad.reason}; line skipped", file=sys.stderr)
    report.malformed = len(batch.bad)
    dups = batch.duplicates()
    if dups:
        cid, lines = next(iter(dups.items()))
        raise W2SError(f"{path}: duplicate ids, nothing was run: {cid!r} on lines {', '.join(map(str, lines))}"
                       + (f" (and {len(dups) - 1} more)" if len(dups) > 1 else ""))
    return batch


async def _sample_all(cfg: Config, opts: PrefsOptions, todo: list[BatchItem], judge: Judge, log: OutputFile,
                      report: PrefsReport, engine) -> None:
    from w2s.proxy.batch.local import EngineRunner
    from w2s.proxy.engine import Engine  # torch: only when there is something to run

    owned = None
    if engine is None:
        engine = owned = Engine(cfg)
    progress = None
    try:
        if owned is not None:
            await owned.start()
        runner = EngineRunner(engine)
        progress = Progress(len(todo), opts.progress, desc="w2s make-prefs")
        pending = iter(todo)

        async def worker() -> None:
            for item in pending:
                rec = await _sample_one(runner, opts, item, judge, report)
                if rec is not None:
                    log.append(rec)  # synchronous: a cancel cannot land mid-line
                progress.item(rec is not None)

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(opts.concurrency, len(todo))):
                tg.create_task(worker())
    finally:
        if progress is not None:
            progress.close()
        if owned is not None:
            await owned.aclose()


async def _sample_one(runner, opts: PrefsOptions, item: BatchItem, judge: Judge, report: PrefsReport) -> dict | None:
    body = {"model": opts.route, "n": opts.n, **item.body}
    if opts.seed is not None:
        body.setdefault("seed", opts.seed + item.line)
    outcome = await runner.execute(BatchItem(item.custom_id, item.url, body, item.line))
    if not outcome.ok:
        err = (outcome.body or {}).get("error") or {}
        return _failed(report, item, f"HTTP {outcome.status}: {err.get('message', 'failed')}")
    texts = [c["message"]["content"] if "message" in c else c["text"] for c in outcome.body["choices"]]
    try:
        scores = judge_all(judge, texts)
    except JudgeError as e:
        return _failed(report, item, str(e))
    report.sampled += 1
    prompt = body["messages"] if "messages" in body else body["prompt"]
    return {"custom_id": item.custom_id, "line": item.line, "prompt": prompt, "route": body["model"],
            "judge": opts.judge, "answers": [{"text": t, "score": s} for t, s in zip(texts, scores)]}


def _failed(report: PrefsReport, item: BatchItem, why: str) -> None:
    report.failed.append((item.custom_id, why))
    print(f"w2s make-prefs: {item.custom_id} (line {item.line}): {why}; it runs again next time", file=sys.stderr)
    return None
