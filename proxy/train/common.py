"""What DPO and reward-model training share: the checkpoint selection, the progress
lines, the Trainer settings (checkpoints every held-out evaluation, the best one
kept, resume from the last), and reading the outcome off the Trainer's log.

Each trainer names its own metric keys (`Metrics`): TRL's DPOTrainer logs
`eval_rewards/accuracies`, its RewardTrainer `eval_accuracy`.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint

from w2s.proxy.train.settings import DPOOutcome, DPOSettings, EvalPoint

SELECTION = "eval_selection"  # what picks the checkpoint kept: see selection()


@dataclass(frozen=True)
class Metrics:
    accuracy: str  # held-out reward accuracy
    margin: str  # held-out mean reward margin
    train_accuracy: str  # the same on the training batch


def selection(accuracy: float, margin: float) -> float:
    """Held-out accuracy first (to 1e-6); the held-out margin breaks ties (it adds less than 0.5).

    A small held-out set saturates at accuracy 1.0 early; among equally accurate
    checkpoints the one separating held-out pairs most widely is kept.
    """
    return round(accuracy * 1e6) + math.atan(margin) / math.pi


def with_selection(metrics: dict[str, float], keys: Metrics) -> dict[str, float]:
    if keys.accuracy in metrics:
        metrics[SELECTION] = selection(metrics[keys.accuracy], metrics.get(keys.margin, 0.0))
    return metrics


class GuideProgress(ProgressCallback):
    """The Trainer's progress bar, with the loss on it and one readable line per held-out
    evaluation (instead of a raw dict per step, and a second bar per evaluation)."""

    def __init__(self, keys: Metrics):
        super().__init__()
        self.keys = keys

    def on_prediction_step(self, args, state, control, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is None or not logs:
            return
        k = self.keys
        if k.accuracy in logs:
            self.training_bar.write(
                f"step {state.global_step}: held-out reward accuracy {logs[k.accuracy]:.3f}, "
                f"margin {logs.get(k.margin, float('nan')):.3f}, loss {logs.get('eval_loss', float('nan')):.3f}",
                file=sys.stderr)
        elif "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}",
                                          acc=f"{logs.get(k.train_accuracy, float('nan')):.2f}", refresh=False)


def trainer_args(s: DPOSettings, checkpoints: Path, cpu: bool) -> dict[str, Any]:
    """The TrainingArguments both trainers' configs take."""
    return dict(
        output_dir=str(checkpoints),
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        lr_scheduler_type="constant",  # a resumed run may extend --max-steps: no schedule baked into it
        seed=s.seed,
        eval_strategy="steps",
        eval_steps=s.eval_every,
        save_strategy="steps",
        save_steps=s.eval_every,
        save_total_limit=2,  # the best and the latest (the Trainer never deletes the best)
        load_best_model_at_end=True,
        metric_for_best_model=SELECTION,
        greater_is_better=True,
        logging_steps=1,
        report_to=[],
        use_cpu=cpu,
        bf16=False,  # the guide scores in float32 (proxy/runtime/loading.py): train in it too
        gradient_checkpointing=False,  # a small model: memory is not the limit, time is
        max_length=None,  # the scorer never truncates; long pairs are dropped before (--max-length)
        dataloader_num_workers=0,
    )


def last_checkpoint(out: Path) -> str | None:
    checkpoints = out / "checkpoints"
    return get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None


def _step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


def run(trainer: Any, keys: Metrics, last: str | None, callbacks: list | None = None) -> tuple[Any, DPOOutcome]:
    """Train (resuming from `last`); -> (the model with the best checkpoint loaded, the outcome)."""
    for default in (ProgressCallback, PrinterCallback):  # which one depends on the log level
        trainer.remove_callback(default)
    trainer.add_callback(GuideProgress(keys))
    for cb in callbacks or []:
        trainer.add_callback(cb)
    if last and _step(last) >= trainer.args.max_steps:
        # Nothing left to train. The Trainer would resume into the epoch anyway and take one step more
        # (transformers 5.25: it checks max_steps only after a step), changing a finished run's adapter.
        trainer.state = TrainerState.load_from_json(str(Path(last) / TRAINER_STATE_NAME))
        trainer._load_best_model()
    else:
        trainer.train(resume_from_checkpoint=last)
    history = [EvalPoint(int(h["step"]), h[keys.accuracy], h.get(keys.margin, float("nan")),
                         h.get("eval_loss", float("nan")))
               for h in trainer.state.log_history if keys.accuracy in h]
    best_step = trainer.state.best_global_step
    best = next((p for p in history if p.step == best_step), history[-1])
    resumed = _step(last) if last else None
    return trainer.model, DPOOutcome(best, history, resumed, trainer.state.global_step)
