"""What a batch run tells the user: a live progress bar and the closing summary."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class BatchReport:
    concurrency: int
    remote: bool = False  # --url: the scorer's numbers live in the proxy, not here
    ray: bool = False  # --ray: they live in the workers; concurrency is per worker
    done: int = 0  # succeeded in this run
    failed: int = 0  # failed in this run (an error line was written)
    skipped: int = 0  # already in the output from an earlier run
    skipped_failed: int = 0  # ... of which failed then and were not retried
    malformed: int = 0  # input lines reported and skipped
    not_run: int = 0  # left for the next run by an interrupt
    interrupted: bool = False
    signal: int = 0  # the signal that interrupted the run (SIGINT, SIGTERM)
    failed_in_output: int = 0  # items of this input whose final line is an error
    upstream_tokens: int = 0  # what the searches spent, every round
    scorer_tokens: int = 0
    load_seconds: float = 0.0
    run_seconds: float = 0.0
    scorer_batches: int = 0  # forward passes during this run
    scorer_rows: int = 0
    scorer_max_rows: int = 0
    items_per_worker: dict[str, int] = field(default_factory=dict)  # --ray: which worker ran how many
    upstream_calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, from the upstream's prompt cache
    completion_tokens: int = 0
    answer_tokens: int = 0  # the answers' own tokens: what plain draws of them would have written
    cost_usd: float | None = None  # where the upstream has prices

    def add_cost(self, o) -> None:
        """One item's upstream cost (an Outcome), into the totals."""
        self.upstream_calls += o.upstream_calls
        self.prompt_tokens += o.prompt_tokens
        self.cached_tokens += o.cached_tokens
        self.completion_tokens += o.completion_tokens
        self.answer_tokens += o.answer_tokens
        if o.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + o.cost_usd

    def cost_lines(self) -> list[str]:
        """Totals and per answer; the steering multiplier: completion tokens spent over the answers' own."""
        n = self.done + self.failed
        if not n or not (self.prompt_tokens or self.completion_tokens):
            return []
        share = f"{self.cached_tokens / self.prompt_tokens:.0%}" if self.prompt_tokens else "—"
        out = [f"  upstream: {self.upstream_calls} calls, {self.prompt_tokens} prompt tokens ({self.cached_tokens} "
               f"cached, {share}), {self.completion_tokens} completion tokens; per answer {self.upstream_calls / n:.1f} "
               f"calls, {self.prompt_tokens / n:.0f} prompt + {self.completion_tokens / n:.0f} completion tokens"]
        if self.cost_usd is not None:
            out.append(f"  cost: ${self.cost_usd:.6f} (${self.cost_usd / n:.6f} per answer)")
        if self.answer_tokens:
            out.append(f"  steering multiplier: {self.completion_tokens / self.answer_tokens:.1f}x (upstream completion "
                       f"tokens over the answers' own {self.answer_tokens}: what plain draws would have written)")
        return out

    @property
    def answers_per_minute(self) -> float:
        return 60.0 * self.done / self.run_seconds if self.run_seconds > 0 else 0.0

    @property
    def mean_batch_rows(self) -> float:
        return self.scorer_rows / self.scorer_batches if self.scorer_batches else 0.0

    def lines(self) -> list[str]:
        head = (f"w2s batch: {self.done} done, {self.failed} failed, {self.skipped} skipped (already in the output"
                + (f", {self.skipped_failed} of them failed: --retry-failed reruns those" if self.skipped_failed else "")
                + f"), {self.malformed} malformed input line{'s' if self.malformed != 1 else ''}")
        if self.interrupted:
            head += f"; interrupted, {self.not_run} not run (rerun the same command to resume)"
        out = [head]
        if self.done or self.failed or self.run_seconds:
            at = (f"{len(self.items_per_worker)} Ray workers x concurrency {self.concurrency}" if self.ray
                  else f"concurrency {self.concurrency}")
            out.append(f"  time: {self.load_seconds:.1f} s loading + {self.run_seconds:.1f} s running "
                       f"({self.answers_per_minute:.1f} answers/min at {at})")
            out.append(f"  tokens: {self.upstream_tokens} upstream, {self.scorer_tokens} scorer")
            out += self.cost_lines()
            if self.items_per_worker:
                out.append("  ray workers: " + ", ".join(f"{w}: {n} items" for w, n in self.items_per_worker.items()))
            if self.remote:
                out.append("  scorer batches: in the proxy (see its /metrics)")
            elif self.scorer_batches:
                out.append(f"  scorer batches: {self.scorer_batches} forward passes, mean "
                           f"{self.mean_batch_rows:.1f} rows/pass (max {self.scorer_max_rows})")
        return out


class Progress:
    """A tqdm bar on stderr (done/failed, rate, ETA); a no-op when disabled."""

    def __init__(self, total: int, enabled: bool, desc: str = "w2s batch"):
        self.done = self.failed = 0
        self._bar = None
        if enabled and total:
            from tqdm import tqdm  # a dependency of transformers and openai

            self._bar = tqdm(total=total, desc=desc, unit="item", file=sys.stderr,
                             dynamic_ncols=True, smoothing=0.1)

    def item(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix(done=self.done, failed=self.failed, refresh=False)
            self._bar.update(1)

    def write(self, line: str) -> None:
        """A message that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
