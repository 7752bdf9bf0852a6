"""A reward model's scalar head: a Linear on the last real token's hidden state.

A sequence-classification model (AutoModelForSequenceClassification) is a decoder
plus `score`, a (1, E) Linear read at the last non-pad token. The guide keeps the
decoder as the pool's (causal) model, so a trained reward model's LoRA is one
more adapter on the base the pairs share, and applies `score` itself: reward rows
then ride the same padded forward pass as log-prob rows (scorers/rows.py), and
no (B, N, V) vocabulary projection is ever computed for them.

Loading reads `score.weight` (and `score.bias` if any) from a safetensors file, or
from the *.safetensors files of a directory (a full sequence-classification
checkpoint, or `head.safetensors` that train-guide writes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from w2s.proxy.core.errors import ModelLoadError

HEAD_FILE = "head.safetensors"  # what train-guide --kind reward-model writes next to adapter/
WEIGHT, BIAS = "score.weight", "score.bias"


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / HEAD_FILE).exists():
        return [path / HEAD_FILE]
    return sorted(path.glob("*.safetensors"))


def load_head(path: str, hidden_size: int, dtype: torch.dtype, device: Any) -> torch.nn.Linear:
    """The (E -> 1) head stored at `path`, on the decoder's dtype and device, in eval mode."""
    from safetensors import safe_open

    where = Path(path).expanduser()
    found: dict[str, torch.Tensor] = {}
    for f in _files(where):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.endswith(WEIGHT) or key.endswith(BIAS):
                    found[WEIGHT if key.endswith(WEIGHT) else BIAS] = st.get_tensor(key)
    w = found.get(WEIGHT)
    if w is None:
        raise ModelLoadError(f"reward model head: no {WEIGHT} in {path} (a sequence-classification checkpoint, "
                             f"or the {HEAD_FILE} train-guide --kind reward-model writes)")
    if tuple(w.shape) != (1, hidden_size):
        raise ModelLoadError(f"reward model head: {WEIGHT} in {path} is {tuple(w.shape)}; a reward model has one "
                             f"label on the decoder's {hidden_size} hidden units: (1, {hidden_size})")
    head = torch.nn.Linear(hidden_size, 1, bias=BIAS in found)
    with torch.no_grad():
        head.weight.copy_(w)
        if BIAS in found:
            head.bias.copy_(found[BIAS].reshape(1))
    return head.to(device=device, dtype=dtype).eval()


def head_rewards(hidden: torch.Tensor, rows: list) -> dict[int, float]:
    """Row index -> its head's scalar, for the rows that carry a head. hidden: (B, N, E), each row's
    new tokens right-padded, so its last real token is at new_tokens - 1."""
    out: dict[int, float] = {}
    by_head: dict[int, list[int]] = {}
    for b, r in enumerate(rows):
        if r.head is not None:
            by_head.setdefault(id(r.head), []).append(b)
    for idx in by_head.values():
        head = rows[idx[0]].head
        last = torch.tensor([rows[b].new_tokens - 1 for b in idx], device=hidden.device)  # (R,)
        h = hidden[torch.tensor(idx, device=hidden.device), last]  # (R, E)
        r = head(h.to(head.weight.dtype)).detach().float().reshape(-1).cpu()  # (R,)
        out.update({b: float(v) for b, v in zip(idx, r)})
    return out
