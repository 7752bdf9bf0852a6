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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from w2s.proxy.train.common import Metrics, last_checkpoint, run, selection, trainer_args, with_selection
from w2s.proxy.train.settings import DPOOutcome, DPOSettings

ACCURACY = "eval_rewards/accuracies"  # TRL's held-out reward accuracy
MARGIN = "eval_rewards/margins"
KEYS = Metrics(ACCURACY, MARGIN, "rewards/accuracies")
__all__ = ["selection", "train_dpo", "PairCollator", "KEYS"]


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
        return with_selection(super().evaluate(*args, **kwargs), KEYS)


def dpo_config(s: DPOSettings, checkpoints: Path, cpu: bool) -> DPOConfig:
    return DPOConfig(**trainer_args(s, checkpoints, cpu), beta=s.beta,
                     remove_unused_columns=False)  # our columns, read by PairCollator


def train_dpo(model: Any, tokenizer: Any, train_rows: list[dict], eval_rows: list[dict], s: DPOSettings,
              out: Path, cpu: bool, callbacks: list | None = None) -> tuple[Any, DPOOutcome]:
    """Train; -> (the PeftModel with the best checkpoint's adapter loaded, the outcome).
    `callbacks`: extra TrainerCallbacks (bench/dpo_steps.py times the steps with one)."""
    from datasets import Dataset
    from peft import LoraConfig

    last = last_checkpoint(out)
    trainer = GuideDPOTrainer(
        model=model,
        args=dpo_config(s, out / "checkpoints", cpu),
        data_collator=PairCollator(tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    return run(trainer, KEYS, last, callbacks)
