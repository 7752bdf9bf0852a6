"""Hand computations the tests compare the scorer against."""
from __future__ import annotations

import torch


def lcp(a, b) -> int:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


@torch.inference_mode()
def hand_logprob(loaded, prompt_text: str, response: str, add_special: bool, eos: bool, mask_at: str = "lcp") -> float:
    """Sum of log p(response tokens | prompt) from one plain, unpadded forward pass."""
    tok = loaded.tokenizer
    p = tok(prompt_text, add_special_tokens=add_special)["input_ids"]
    full = tok(prompt_text + response, add_special_tokens=add_special)["input_ids"]
    if eos:
        full = full + [loaded.eos_id]
    start = lcp(p, full) if mask_at == "lcp" else len(p)
    logits = loaded.model(torch.tensor([full], device=loaded.device)).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return float(sum(lp[i - 1, full[i]].item() for i in range(max(1, start), len(full))))
