"""DPO of a LoRA adapter with TRL's DPOTrainer, on ids the project tokenized itself.

The model is the configured small model; the adapter is new (PEFT LoRA), and
with a `peft_config` and no `ref_model` TRL's reference is the same model with
the adapter disabled: the weights exist once, and the DPO reference is exactly
the untuned side of the guide the adapter becomes.

Two things differ from a stock DPOTrainer run, both so that training sees what
the scorer sees: the dataset is already tokenized (proxy/train/encode.py; TRL's
own tokenization is skipped), and the collator masks each answer from its own
start (TRL's would cut chosen and rejected at the shorter common prefix).

Checkpoints every `eval_every` steps, each after a held-out evaluation; the
adapter kept is the checkpoint with the best held-out reward accuracy (ties:
the larger held-out margin), never a downstream evaluation. Rerunning with the
same output directory resumes from the last checkpoint.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import DPOConfig, DPOTrainer

from w2s.proxy.train.settings import DPOOutcome, DPOSettings, EvalPoint

ACCURACY = "eval_rewards/accuracies"  # TRL's held-out reward accuracy
MARGIN = "eval_rewards/margins"
SELECTION = "eval_selection"  # what picks the checkpoint kept: see selection()


def selection(accuracy: float, margin: float) -> float:
    """Held-out accuracy first (to 1e-6); the held-out margin breaks ties (it adds less than 0.5).

    A small held-out set saturates at accuracy 1.0 early; among equally accurate
    checkpoints the one separating held-out pairs most widely is kept.
    """
    return round(accuracy * 1e6) + math.atan(margin) / math.pi


@dataclass
class PairCollator:
    """Rows -> TRL's batch: chosen rows then rejected rows, right-padded, with
    completion_mask set from each answer's own start."""

    pad_id: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [(r["chosen_ids"], r["chosen_start"]) for r in rows] + \
               [(r["rejected_ids"], r["rejected_start"]) for r in rows]
        T = max(len(ids) for ids, _ in seqs)
        input_ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)  # (2B, T)
        attention = torch.zeros((len(seqs), T), dtype=torch.long)  # (2B, T)
        completion = torch.zeros((len(seqs), T), dtype=torch.long)  # (2B, T): 1 = a scored token
        for i, (ids, start) in enumerate(seqs):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[i, : len(ids)] = 1
            completion[i, start: len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


class GuideDPOTrainer(DPOTrainer):
    def _prepare_dataset(self, dataset, *args, **kwargs):
        return dataset  # tokenized by proxy/train/encode.py with the scorer's own encoder

    def evaluate(self, *args, **kwargs) -> dict[str, float]:
        metrics = super().evaluate(*args, **kwargs)
        if ACCURACY in metrics:
            metrics[SELECTION] = selection(metrics[ACCURACY], metrics.get(MARGIN, 0.0))
        return metrics


class GuideProgress(ProgressCallback):
    """The Trainer's progress bar, with the loss on it and one readable line per held-out
    evaluation (instead of a raw dict per step, and a second bar per evaluation)."""

    def on_prediction_step(self, args, state, control, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is None or not logs:
            return
        if ACCURACY in logs:
            self.training_bar.write(
                f"step {state.global_step}: held-out reward accuracy {logs[ACCURACY]:.3f}, "
                f"margin {logs.get(MARGIN, float('nan')):.3f}, loss {logs.get('eval_loss', float('nan')):.3f}",
                file=sys.stderr)
        elif "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}",
                                          acc=f"{logs.get('rewards/accuracies', float('nan')):.2f}", refresh=False)


def dpo_config(s: DPOSettings, checkpoints: Path, cpu: bool) -> DPOConfig:
    return DPOConfig(
        output_dir=str(checkpoints),
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        lr_scheduler_type="constant",  # a resumed run may extend --max-steps: no schedule baked into it
        beta=s.beta,
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
        remove_unused_columns=False,  # our columns, read by PairCollator
        dataloader_num_workers=0,
    )


def train_dpo(model: Any, tokenizer: Any, train_rows: list[dict], eval_rows: list[dict], s: DPOSettings,
              out: Path, cpu: bool, callbacks: list | None = None) -> tuple[Any, DPOOutcome]:
    """Train; -> (the PeftModel with the best checkpoint's adapter loaded, the outcome).
    `callbacks`: extra TrainerCallbacks (bench/dpo_steps.py times the steps with one)."""
    from datasets import Dataset
    from peft import LoraConfig

    checkpoints = out / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer = GuideDPOTrainer(
        model=model,
        args=dpo_config(s, checkpoints, cpu),
        data_collator=PairCollator(tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    for default in (ProgressCallback, PrinterCallback):  # which one depends on the log level
        trainer.remove_callback(default)
    trainer.add_callback(GuideProgress())
    for cb in callbacks or []:
        trainer.add_callback(cb)
    trainer.train(resume_from_checkpoint=last)
    history = [EvalPoint(int(h["step"]), h[ACCURACY], h.get(MARGIN, float("nan")), h.get("eval_loss", float("nan")))
               for h in trainer.state.log_history if ACCURACY in h]
    best_step = trainer.state.best_global_step
    best = next((p for p in history if p.step == best_step), history[-1])
    resumed = int(Path(last).name.split("-")[-1]) if last else None
    return trainer.model, DPOOutcome(best, history, resumed, trainer.state.global_step)
