"""`w2s batch INPUT.jsonl -o OUTPUT.jsonl`: run a file of requests, resumably.

    input  (proxy.batch.input)   OpenAI Batch API lines or simple {"id", "prompt"|"messages"} lines
    output (proxy.batch.output)  OpenAI batch output records, one per id, appended and fsync'd
    runner (proxy.batch.local / proxy.batch.remote / proxy.batch.ray_runner)  in-process Engine,
           a proxy at --url, or Engine actors on a Ray cluster (--ray); only this process writes

Order of work, so that a mistake costs nothing: read and check the whole input
(duplicate ids abort here, before anything runs), open and repair the output,
decide what is left to run, and only then load the models.

Resume: ids already in the output are skipped (failed ones too, unless
--retry-failed). Ctrl-C / SIGTERM stop launching items, cancel the running
ones (they are not written, so the next run does them), compact if needed,
and exit 130 / 143. A second Ctrl-C interrupts the cleanup itself.

Exit status: 0 every item succeeded; 1 some item failed or some input line was
malformed; 2 a usage error (duplicate ids, bad config, unknown --model,
unreadable files); 130 / 143 interrupted.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from w2s.proxy.api.results import new_id
from w2s.proxy.api.wire_errors import openai_body
from w2s.proxy.batch.input import BatchInput, BatchItem, read_input
from w2s.proxy.batch.output import Outcome, OutputFile, OutputState, make_record
from w2s.proxy.batch.report import BatchReport, Progress
from w2s.proxy.core.config import Config
from w2s.proxy.core.errors import InvalidRequest, W2SError

if TYPE_CHECKING:
    from w2s.proxy.batch.ray_runner import RayOptions


@dataclass
class BatchOptions:
    input: Path
    output: Path
    route: str | None = None  # for items that name no model; None = the config's default_route
    concurrency: int = 1
    url: str | None = None  # a running proxy instead of loading the models here
    api_key: str | None = None  # for --url
    retry_failed: bool = False
    progress: bool = True
    trace: bool = False  # every body carries its search trace (as "w2s": {"trace": true} would)
    ray: RayOptions | None = None  # run on a Ray cluster; concurrency is then per worker

    @classmethod
    def from_args(cls, args) -> "BatchOptions":
        return cls(
            input=Path(args.input), output=Path(args.output), route=args.route,
            concurrency=args.concurrency, url=args.url,
            api_key=getattr(args, "api_key", None) or os.environ.get("W2S_API_KEY"),
            retry_failed=args.retry_failed, progress=not args.no_progress, trace=getattr(args, "trace", False),
            ray=_ray_options(args),
        )


def _ray_options(args) -> RayOptions | None:
    if not getattr(args, "ray", False):
        for flag in ("ray_address", "ray_workers", "ray_cpus", "ray_gpus"):
            if getattr(args, flag, None) is not None:
                raise W2SError(f"--{flag.replace('_', '-')} needs --ray")
        return None
    if args.url is not None:
        raise W2SError("--ray and --url exclude each other: the items run on the cluster or at the proxy")
    from w2s.proxy.batch.ray_runner import RayOptions  # no ray import: that waits for the runner

    return RayOptions(address=args.ray_address, workers=args.ray_workers, cpus_per_worker=args.ray_cpus,
                      gpus_per_worker=args.ray_gpus or 0.0, task_retries=args.ray_task_retries)


class Runner(Protocol):
    async def execute(self, item: BatchItem) -> Outcome: ...


def run_batch_cli(cfg: Config, args) -> int:
    report = asyncio.run(run_batch(cfg, BatchOptions.from_args(args), handle_signals=True))
    for line in report.lines():
        print(line, file=sys.stderr)
    return exit_status(report)


def exit_status(report: BatchReport) -> int:
    if report.interrupted:
        return 128 + report.signal if report.signal else 130
    return 1 if (report.failed_in_output or report.malformed) else 0


async def run_batch(cfg: Config, opts: BatchOptions, engine=None, handle_signals: bool = False) -> BatchReport:
    """Run `opts.input` into `opts.output`. `engine`: an already started Engine to
    use (and leave open) instead of loading one; ignored with `opts.url`."""
    if opts.concurrency < 1:
        raise W2SError("--concurrency must be >= 1")
    if opts.output.exists() and opts.input.exists() and opts.output.samefile(opts.input):
        raise W2SError("the output file must not be the input file")
    if opts.url is None and opts.route is not None:  # (--ray too: the workers run this config)
        cfg.route(opts.route)  # an unknown --model is a usage error: fail before touching anything
    batch = _read_input(opts.input)
    report = BatchReport(concurrency=opts.concurrency, remote=opts.url is not None, malformed=len(batch.bad),
                         ray=opts.ray is not None)
    out = OutputFile(opts.output)
    state = out.open()
    try:
        _check_output(opts.output, state)
        todo = _plan(batch, state, opts.retry_failed, report)
        run = _Run(cfg, opts, out, state, report, engine)
        if todo:
            await run.execute(todo, handle_signals)
        if state.repeated:
            out.compact()  # a retry appended after the old error lines: one line per id again
            state.repeated = 0
        report.failed_in_output = sum(1 for it in batch.items if state.ok.get(it.custom_id) is False)
    finally:
        out.close()
    return report


def _read_input(path: Path) -> BatchInput:
    try:
        batch = read_input(path)
    except OSError as e:
        raise W2SError(f"cannot read input {path}: {e.strerror}") from None
    for bad in batch.bad:
        print(f"w2s batch: {path}:{bad.line}: {bad.reason}; line skipped", file=sys.stderr)
    dups = batch.duplicates()
    if dups:
        listed = "; ".join(f"{cid!r} on lines {', '.join(map(str, lines))}" for cid, lines in list(dups.items())[:10])
        more = f" (and {len(dups) - 10} more)" if len(dups) > 10 else ""
        raise W2SError(f"{path}: duplicate ids, nothing was run: {listed}{more}")
    return batch


def _check_output(path: Path, state: OutputState) -> None:
    if state.truncated_bytes:
        print(f"w2s batch: {path}: removed a partial last line ({state.truncated_bytes} bytes) "
              "left by an interrupted write; that item runs again", file=sys.stderr)
    if state.corrupt:
        # Only a partial *last* line can come from a crash; anything else was
        # written by someone else, and is not ours to throw away.
        lines = ", ".join(map(str, state.corrupt[:10]))
        raise W2SError(f"{path}: line(s) {lines} are not batch output records; fix or remove them, then rerun")


def _plan(batch: BatchInput, state: OutputState, retry_failed: bool, report: BatchReport) -> list[BatchItem]:
    todo = []
    for item in batch.items:
        ok = state.ok.get(item.custom_id)
        if ok is None or (ok is False and retry_failed):
            todo.append(item)
        else:
            report.skipped += 1
            report.skipped_failed += ok is False
    return todo


class _Run:
    """One run over the items left to do: load, execute concurrently, account."""

    def __init__(self, cfg: Config, opts: BatchOptions, out: OutputFile, state: OutputState,
                 report: BatchReport, engine=None):
        self.cfg, self.opts, self.out, self.state, self.report = cfg, opts, out, state, report
        self.engine = engine
        self.active: set[asyncio.Task] = set()  # what an interrupt cancels
        self.signals: list[int] = []  # the signals received
        self.installed: list[int] = []  # the handlers this run installed (and must remove)
        self.progress: Progress | None = None

    async def execute(self, todo: list[BatchItem], handle_signals: bool) -> None:
        if handle_signals:
            self._install_signals()
        runner = None
        owned = None
        try:
            t0 = time.perf_counter()
            runner, owned = await self._cancellable(self._start_runner())
            self.report.load_seconds = time.perf_counter() - t0
            if runner is not None and not self.signals:
                await self._execute_all(runner, todo)
        finally:
            self._remove_signals()
            if hasattr(runner, "items_per_worker"):
                self.report.items_per_worker = runner.items_per_worker()
            if owned is not None:
                await owned.aclose()
            self.report.not_run = len(todo) - self.report.done - self.report.failed
            self.report.interrupted = bool(self.signals)
            self.report.signal = self.signals[0] if self.signals else 0

    async def _start_runner(self):
        """-> (runner, what to close afterwards)."""
        if self.opts.ray is not None:
            from w2s.proxy.batch.ray_runner import RayRunner

            ray_runner = RayRunner(self.cfg, self.opts.ray, self.opts.concurrency)
            try:
                await ray_runner.start()
            except BaseException:
                await ray_runner.aclose()
                raise
            return ray_runner, ray_runner
        if self.opts.url is not None:
            from w2s.proxy.batch.remote import RemoteRunner

            remote = RemoteRunner(self.opts.url, self.opts.api_key)
            try:
                await remote.start()
            except BaseException:
                await remote.aclose()
                raise
            return remote, remote
        from w2s.proxy.batch.local import EngineRunner

        owned = None
        if self.engine is None:
            from w2s.proxy.engine import Engine  # torch: only when running here

            self.engine = owned = Engine(self.cfg)
            try:
                await self.engine.start()
            except BaseException:
                await owned.aclose()
                raise
        return EngineRunner(self.engine), owned

    async def _cancellable(self, coro):
        task = asyncio.ensure_future(coro)
        self.active.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if not self.signals:
                raise  # not ours: somebody cancelled the whole run
            return None, None
        finally:
            self.active.discard(task)

    async def _execute_all(self, runner: Runner, todo: list[BatchItem]) -> None:
        stats0 = self._scorer_stats()
        progress = self.progress = Progress(len(todo), self.opts.progress)
        pending = iter(todo)  # shared: each worker takes the next item
        t0 = time.perf_counter()

        async def worker() -> None:
            for item in pending:
                if self.signals:
                    return
                outcome = await self._run_one(runner, item)
                self._write(item, outcome)  # synchronous: a cancel cannot land mid-line
                progress.item(outcome.ok)

        try:
            async with asyncio.TaskGroup() as tg:  # one failing worker (a bug, a full disk) stops all
                # On Ray, --concurrency is per worker: the runner says how many in all.
                for _ in range(min(getattr(runner, "slots", self.opts.concurrency), len(todo))):
                    self.active.add(tg.create_task(worker()))
        except ExceptionGroup as eg:
            e = eg.exceptions[0]
            if isinstance(e, OSError):  # the output could not be written: say so in one line
                raise W2SError(f"cannot write {self.opts.output}: {e.strerror or e}") from None
            raise e from None
        finally:
            progress.close()
            self.report.run_seconds = time.perf_counter() - t0
            self._account_scorer(stats0)
            self.active.clear()

    async def _run_one(self, runner: Runner, item: BatchItem) -> Outcome:
        body = item.body
        if self.opts.route is not None and body.get("model") is None:
            body = {**body, "model": self.opts.route}
        if self.opts.trace and isinstance(body.get("w2s"), (dict, type(None))):
            body = {**body, "w2s": {**(body.get("w2s") or {}), "trace": True}}
        if body.get("stream") is True:
            err = InvalidRequest("stream: not supported in batch requests", param="stream")
            return Outcome(new_id("req_"), err.status, openai_body(err))
        return await runner.execute(BatchItem(item.custom_id, item.url, body, item.line))

    def _write(self, item: BatchItem, outcome: Outcome) -> None:
        self.out.append(make_record(new_id("batch_req_"), item.custom_id, outcome))
        if item.custom_id in self.state.ok:
            self.state.repeated += 1
        self.state.ok[item.custom_id] = outcome.ok
        r = self.report
        if outcome.ok:
            r.done += 1
        else:
            r.failed += 1
        r.upstream_tokens += outcome.upstream_tokens
        r.scorer_tokens += outcome.scorer_tokens
        r.add_cost(outcome)

    # --- interrupts -------------------------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._interrupt, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / not POSIX
                continue
            self.installed.append(sig)

    def _interrupt(self, sig: int) -> None:
        self.signals.append(int(sig))
        say = self.progress.write if self.progress is not None else (lambda s: print(s, file=sys.stderr))
        say(f"w2s batch: {signal.Signals(sig).name}: stopping; running items are cancelled and "
            "will run on the next start (Ctrl-C again to force)")
        self._remove_signals()  # a second Ctrl-C raises KeyboardInterrupt: the user insists
        for task in list(self.active):
            task.cancel()

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        while self.installed:
            loop.remove_signal_handler(self.installed.pop())

    # --- scorer accounting --------------------------------------------------------

    def _scorer_stats(self) -> tuple[int, int, Counter] | None:
        if self.engine is None:
            return None  # a remote run: the proxy's own /metrics has them
        st = self.engine.scorer_stats
        # Not st.seconds: it includes waiting for the model thread behind upstream
        # sampling, so under concurrency it is no measure of scorer work.
        return st.batches, st.rows, Counter(st.batch_rows)

    def _account_scorer(self, before: tuple[int, int, Counter] | None) -> None:
        now = self._scorer_stats()
        if before is None or now is None:
            return
        r = self.report
        r.scorer_batches = now[0] - before[0]
        r.scorer_rows = now[1] - before[1]
        grown = now[2] - before[2]  # rows-per-pass sizes seen during this run
        r.scorer_max_rows = max(grown, default=0)
