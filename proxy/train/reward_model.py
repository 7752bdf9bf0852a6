"""A reward model (LoRA + scalar head) with TRL's RewardTrainer, on ids the project tokenized itself.

The model is the configured small model as AutoModelForSequenceClassification (its
decoder plus a new (1, E) `score` head); PEFT trains a LoRA on the decoder and the
head in full (`modules_to_save`). The rows are the DPO rows (proxy/train/encode.py:
the guide's own ResponseEncoder, a finished answer closed with the model's EOS),
so the guide later scores exactly the ids trained on; TRL sees `chosen_ids` and
`rejected_ids` and skips its own tokenization.

The sequence-classification model reads the last token that is not the padding
token. Many small chat models pad with their EOS, which closes every training
answer: the head would read the token before it, and never see "finished". So
the padding token here is one that no training row contains (`pad_for`).

Saved for the guide (scorers/reward.py), split so the LoRA is one more adapter on
the base the pairs share: DIR/adapter (the decoder's LoRA, a causal-LM adapter)
and DIR/head.safetensors (`score.weight`). Checkpoints, the held-out evaluation,
the best checkpoint kept and resume are DPO's (proxy/train/common.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from trl import RewardConfig, RewardTrainer

from w2s.proxy.core.config import ModelConfig
from w2s.proxy.train.common import Metrics, last_checkpoint, run, trainer_args, with_selection
from w2s.proxy.train.settings import DPOOutcome, DPOSettings

KEYS = Metrics("eval_accuracy", "eval_margin", "accuracy")
HEAD = "score"  # the sequence-classification head's module name (Llama, Qwen, Gemma, Mistral ...)
HEAD_FILE = "head.safetensors"  # read by proxy/runtime/heads.py


class GuideRewardTrainer(RewardTrainer):
    def evaluate(self, *args, **kwargs) -> dict[str, float]:
        return with_selection(super().evaluate(*args, **kwargs), KEYS)


def load_classifier(mcfg: ModelConfig) -> Any:
    """The base of `mcfg` as a one-label sequence-classification model, in the dtype its guide scores in."""
    from transformers import AutoModelForSequenceClassification

    from w2s.proxy.runtime.loading import converted, pick_device, pick_dtype, resolve_source

    device = pick_device(mcfg.device)
    where, gguf = resolve_source(mcfg.source)
    where = converted(where, gguf) if gguf is not None else where
    model = AutoModelForSequenceClassification.from_pretrained(str(where), num_labels=1,
                                                               dtype=pick_dtype(mcfg.dtype, device, True))
    return model.to(device)


def pad_for(rows: list[dict], tokenizer: Any) -> str:
    """A padding token no row contains: the tokenizer's own if possible, else its first unused special token."""
    used = {t for r in rows for key in ("chosen_ids", "rejected_ids") for t in r[key]}
    specials = [tokenizer.pad_token_id] + sorted(tokenizer.all_special_ids) + list(range(len(tokenizer)))
    pad = next(t for t in specials if t is not None and t not in used)
    return tokenizer.convert_ids_to_tokens(pad)


def train_reward(model: Any, tokenizer: Any, train_rows: list[dict], eval_rows: list[dict], s: DPOSettings,
                 out: Path, cpu: bool, callbacks: list | None = None) -> tuple[Any, DPOOutcome]:
    """Train; -> (the PeftModel with the best checkpoint loaded, the outcome)."""
    from datasets import Dataset
    from peft import LoraConfig

    last = last_checkpoint(out)
    keep = ["chosen_ids", "rejected_ids"]
    tokenizer.pad_token = pad_for(train_rows + eval_rows, tokenizer)  # the trainer sets the model's pad id from it
    args = RewardConfig(**trainer_args(s, out / "checkpoints", cpu), disable_dropout=True, remove_unused_columns=True)
    trainer = GuideRewardTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([{k: r[k] for k in keep} for r in train_rows]),
        eval_dataset=Dataset.from_list([{k: r[k] for k in keep} for r in eval_rows]),
        peft_config=LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                               exclude_modules=[HEAD], modules_to_save=[HEAD], task_type="SEQ_CLS"),
    )
    return run(trainer, KEYS, last, callbacks)


def save_for_guide(model: Any, out: Path) -> None:
    """DIR/adapter: the decoder's LoRA as a causal-LM adapter (it loads onto the pool's base);
    DIR/head.safetensors: the trained head."""
    from safetensors.torch import load_file, save_file

    where = out / "adapter"
    model.save_pretrained(str(where))
    weights = load_file(str(where / "adapter_model.safetensors"))
    head = {k: v for k, v in weights.items() if f".{HEAD}." in k}
    lora = {k: v for k, v in weights.items() if k not in head}
    w = next(v for k, v in head.items() if k.endswith(".weight"))
    save_file({f"{HEAD}.weight": w.contiguous()}, str(out / HEAD_FILE))
    save_file(lora, str(where / "adapter_model.safetensors"))
    cfg_path = where / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(task_type="CAUSAL_LM", modules_to_save=None, exclude_modules=None)
    cfg_path.write_text(json.dumps(cfg, indent=2))


def reward_of(model: Any, ids: list[int]) -> float:
    """The trained model's reward for one unpadded row (tests compare the guide with it)."""
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids], device=model.device)).logits[0, 0])
