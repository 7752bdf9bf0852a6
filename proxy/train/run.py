"""`w2s train-guide PREFS.jsonl --model NAME --out DIR [--kind reward-model]`: a guide from preference data:
a pair (DPO, the default) or a reward model (proxy/train/reward_model.py).

Order of work, so that a mistake costs nothing: read and check the whole file
(bad lines reported with their numbers), split it, check DIR (a different run
there is refused), and only then load the model and train.

DIR afterwards:
  adapter/      the LoRA adapter of the best held-out checkpoint (the tuned side; a reward model's decoder)
  head.safetensors  a reward model's scalar head (--kind reward-model)
  checkpoints/  the Trainer's checkpoints (rerun the same command to resume)
  run.json      what was trained on, with what, and the held-out results
  guide.yaml    the models:/guides: lines that use the new guide (also printed)
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from w2s.proxy.core.config import Config, GuideSide, ModelConfig
from w2s.proxy.core.errors import W2SError
from w2s.proxy.train.encode import encode_all, held_out_split
from w2s.proxy.train.prefs import Preference, read_prefs
from w2s.proxy.train.settings import DPOOutcome, DPOSettings


@dataclass
class TrainOptions:
    prefs: Path
    model: str  # a models: name (its base weights; no adapter)
    out: Path
    settings: DPOSettings
    side: GuideSide  # the guide side's template and system prompt: both sides render the same
    held_out: float = 0.1
    max_tokens: int | None = 1024
    max_steps_given: bool = False
    epochs: float = 3.0  # without --max-steps
    kind: str = "dpo"  # or "reward-model"

    @classmethod
    def from_args(cls, args) -> "TrainOptions":
        s = DPOSettings(max_steps=args.max_steps or 0, batch_size=args.batch_size, learning_rate=args.lr,
                        beta=args.beta, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                        eval_every=args.eval_every, seed=args.seed)
        return cls(Path(args.prefs), args.model, Path(args.out), s,
                   GuideSide(model=args.model, system=args.system, template=args.template),
                   held_out=args.held_out, max_tokens=args.max_length or None,
                   max_steps_given=args.max_steps is not None, epochs=args.epochs,
                   kind=getattr(args, "kind", "dpo"))


def train_guide_cli(cfg: Config, args) -> int:
    opts = TrainOptions.from_args(args)
    snippet = train_guide(cfg, opts)
    print(snippet, end="")
    return 0


def train_guide(cfg: Config, opts: TrainOptions) -> str:
    """Train; -> the config lines that use the new pair (also written to DIR/guide.yaml)."""
    mcfg = _check_model(cfg, opts)
    prefs = _read(opts.prefs)
    train_i, _, by_prompt = _split(prefs, opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    identity = _identity(opts, mcfg)
    _check_out(opts.out, identity)
    t0 = time.perf_counter()
    from w2s.proxy.runtime.loading import load_model  # torch: only once the inputs are known to be good

    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    base = load_model(opts.model, mcfg, guide=True)  # float32 under auto: the dtype it scores in
    train_rows, eval_rows = _rows(prefs, {prefs[i].line for i in train_i}, base, opts)
    s = opts.settings
    if not opts.max_steps_given:
        s.max_steps = max(1, round(opts.epochs * len(train_rows) / s.batch_size))
    print(f"w2s train-guide: {len(train_rows)} training pairs, {len(eval_rows)} held out "
          f"({'unseen prompts' if by_prompt else 'by pair: the file has one prompt'}); {s.max_steps} steps of "
          f"{s.batch_size}, held-out evaluation every {s.eval_every}; model {opts.model} on {base.device}",
          file=sys.stderr)
    outcome = _train(base, mcfg, train_rows, eval_rows, opts)
    seconds = time.perf_counter() - t0
    snippet = (config_lines if opts.kind == "dpo" else rm_config_lines)(cfg, opts, mcfg, outcome)
    (opts.out / "guide.yaml").write_text(snippet)
    _write_run(opts.out, identity, outcome, len(train_rows), len(eval_rows), seconds)
    print(f"w2s train-guide: best held-out reward accuracy {outcome.best.accuracy:.3f} (margin "
          f"{outcome.best.margin:.3f}) at step {outcome.best.step} of {outcome.steps}; adapter in "
          f"{opts.out / 'adapter'}; {seconds:.0f} s", file=sys.stderr)
    return snippet


def _train(base, mcfg: ModelConfig, train_rows: list[dict], eval_rows: list[dict], opts: TrainOptions) -> DPOOutcome:
    """Train the kind asked for and save what its guide loads; -> the outcome."""
    cpu = base.device.type == "cpu"
    if opts.kind == "dpo":
        from w2s.proxy.train.dpo import train_dpo

        model, outcome = train_dpo(base.model, base.tokenizer, train_rows, eval_rows, opts.settings, opts.out, cpu)
        model.save_pretrained(str(opts.out / "adapter"))
        return outcome
    from w2s.proxy.train.reward_model import load_classifier, save_for_guide, train_reward

    del base.model  # the classifier below has the same decoder: one copy in memory at a time
    model, outcome = train_reward(load_classifier(mcfg), base.tokenizer, train_rows, eval_rows, opts.settings,
                                  opts.out, cpu)
    save_for_guide(model, opts.out)
    return outcome


def _rows(prefs: list[Preference], train_lines: set[int], base, opts: TrainOptions) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): the pairs as the guide side's token ids."""
    encoded, dropped = encode_all(prefs, base.tokenizer, base.eos_id, opts.side, opts.max_tokens)
    for d in dropped:
        print(f"w2s train-guide: {opts.prefs}:{d.line}: {d.reason}; pair skipped", file=sys.stderr)
    train_rows = [e.as_row() for e in encoded if e.line in train_lines]
    eval_rows = [e.as_row() for e in encoded if e.line not in train_lines]
    if not train_rows or not eval_rows:
        raise W2SError(f"{opts.prefs}: nothing left to {'train on' if not train_rows else 'hold out'}")
    return train_rows, eval_rows


def _check_model(cfg: Config, opts: TrainOptions) -> ModelConfig:
    if opts.model not in cfg.models:
        known = ", ".join(sorted(cfg.models)) or "none"
        raise W2SError(f"--model {opts.model!r} is not in models: (known: {known})")
    mcfg = cfg.models[opts.model]
    if mcfg.adapter:
        raise W2SError(f"--model {opts.model!r} has an adapter: train from a base model (the untuned side)")
    s = opts.settings
    if s.batch_size < 1 or s.eval_every < 1 or (opts.max_steps_given and s.max_steps < 1):
        raise W2SError("--batch-size, --eval-every and --max-steps must be 1 or more")
    if opts.kind not in ("dpo", "reward-model"):
        raise W2SError(f"--kind {opts.kind!r}: one of dpo, reward-model")
    if not 0 < opts.held_out < 1:
        raise W2SError("--held-out must be a fraction between 0 and 1")
    return mcfg


def _read(path: Path) -> list[Preference]:
    try:
        f = read_prefs(path)
    except OSError as e:
        raise W2SError(f"cannot read {path}: {e.strerror}") from None
    for bad in f.bad:
        print(f"w2s train-guide: {path}:{bad.line}: {bad.reason}; line skipped", file=sys.stderr)
    if not f.prefs:
        raise W2SError(f"{path}: no preference pairs ({len(f.bad)} bad lines)")
    return f.prefs


def _split(prefs: list[Preference], opts: TrainOptions) -> tuple[list[int], list[int], bool]:
    try:
        return held_out_split(prefs, opts.held_out, opts.settings.seed)
    except ValueError as e:
        raise W2SError(f"{opts.prefs}: {e}") from None


def _identity(opts: TrainOptions, mcfg: ModelConfig) -> dict:
    """What a resumed run must share with the run it resumes (--max-steps may grow)."""
    s = asdict(opts.settings)
    s.pop("max_steps")
    return {"prefs_sha256": hashlib.sha256(opts.prefs.read_bytes()).hexdigest(), "model": mcfg.model_dump(),
            "side": {"system": opts.side.system, "template": opts.side.template}, "held_out": opts.held_out,
            "max_length": opts.max_tokens, "settings": s,
            **({"kind": opts.kind} if opts.kind != "dpo" else {})}  # a DPO run's identity is as before


def _check_out(out: Path, identity: dict) -> None:
    run = out / "run.json"
    if not run.exists():
        if (out / "checkpoints").exists():
            raise W2SError(f"{out}: has checkpoints but no run.json; use another --out")
        run.write_text(json.dumps({"identity": identity}, indent=2))
        return
    try:
        old = json.loads(run.read_text())["identity"]
    except (ValueError, KeyError, TypeError):
        raise W2SError(f"{run}: not a w2s train-guide run file; use another --out") from None
    diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    if diff and (out / "checkpoints").exists():
        raise W2SError(f"{out} holds a run with other {', '.join(diff)}; use another --out to start a new one")
    if diff:  # nothing trained there yet: nothing to lose
        run.write_text(json.dumps({"identity": identity}, indent=2))


def _write_run(out: Path, identity: dict, outcome: DPOOutcome, n_train: int, n_eval: int, seconds: float) -> None:
    data = {"identity": identity, "train_pairs": n_train, "held_out_pairs": n_eval, "steps": outcome.steps,
            "resumed_from_step": outcome.resumed_from, "seconds_this_run": round(seconds, 1),
            "best": asdict(outcome.best), "evaluations": [asdict(p) for p in outcome.history]}
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out / "run.json")


def config_lines(cfg: Config, opts: TrainOptions, mcfg: ModelConfig, outcome: DPOOutcome) -> str:
    """models:/guides: entries for the new pair: the adapter on the base as tuned, the base as untuned.
    Same source, dtype and device as --model, so both load as one model (proxy/runtime/pool.py)."""
    name = opts.out.resolve().name
    entry = {"source": mcfg.source}
    entry.update({k: v for k, v in (("dtype", mcfg.dtype), ("device", mcfg.device)) if v != "auto"})
    entry["adapter"] = str((opts.out / "adapter").resolve())
    side = {k: v for k, v in (("system", opts.side.system), ("template", opts.side.template)) if v is not None}
    doc = {"models": {name: entry},
           "guides": {name: {"beta": 1.0, "tuned": {"model": name, **side}, "untuned": {"model": opts.model, **side}}}}
    head = (f"# w2s train-guide: add to {cfg.path or 'config.yaml'} (models: {opts.model} is already there).\n"
            f"# Held-out reward accuracy {outcome.best.accuracy:.3f}, margin {outcome.best.margin:.3f} "
            f"(DPO beta {opts.settings.beta}), step {outcome.best.step}.\n"
            "# beta 1.0: the score is the log-ratio itself; DPO's implicit reward is dpo_beta times it.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def rm_config_lines(cfg: Config, opts: TrainOptions, mcfg: ModelConfig, outcome: DPOOutcome) -> str:
    """models:/guides: entries for the new reward model: its LoRA on the base (one more adapter on the
    weights any pair on --model shares), its head, and a guide of kind reward_model."""
    name = opts.out.resolve().name
    entry = {"source": mcfg.source}
    entry.update({k: v for k, v in (("dtype", mcfg.dtype), ("device", mcfg.device)) if v != "auto"})
    entry["adapter"] = str((opts.out / "adapter").resolve())
    side = {k: v for k, v in (("system", opts.side.system), ("template", opts.side.template)) if v is not None}
    guide = {"kind": "reward_model", "model": name, "head": str((opts.out / "head.safetensors").resolve()),
             "beta": 1.0, **side}
    doc = {"models": {name: entry}, "guides": {name: guide}}
    head = (f"# w2s train-guide --kind reward-model: add to {cfg.path or 'config.yaml'} (models: {opts.model} "
            "is already there).\n"
            f"# Held-out reward accuracy {outcome.best.accuracy:.3f}, margin {outcome.best.margin:.3f}, "
            f"step {outcome.best.step}.\n"
            "# beta 1.0: the score is the reward itself (a mixture part's weight scales it against the others).\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
