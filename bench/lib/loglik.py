"""The KL side of a search: an answer's log-likelihood under the upstream model itself."""
from __future__ import annotations


def upstream_loglik_rows(model, tok, opening: str, answers: list[tuple[str, str]]):
    """Rows for log p_upstream(answer [+ EOS if it stopped] | opening)."""
    from w2s.proxy.core.rendering import common_prefix_len
    from w2s.scorers.rows import Row

    prompt_ids = tok(opening, add_special_tokens=True)["input_ids"]
    rows, starts = [], []
    for text, finish in answers:
        ids = tok(opening + text, add_special_tokens=True)["input_ids"]
        if finish == "stop":
            eos = tok.eos_token_id if tok.eos_token_id is not None else model.config.eos_token_id
            ids = ids + [eos if isinstance(eos, int) else eos[0]]
        start = max(1, common_prefix_len(prompt_ids, ids))
        if start >= len(ids):  # empty answer: nothing to score
            start = len(ids) - 1
        rows.append(Row(ids))
        starts.append(start)
    return rows, starts
