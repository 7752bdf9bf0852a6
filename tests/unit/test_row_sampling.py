"""RowSampler's arithmetic on small synthetic logits (no model needed): each row
its own temperature, top-k, top-p and seeded RNG, and frequencies that follow
the softmax they should."""
from __future__ import annotations

import math

import torch

from w2s.providers.row_sampling import RowSampler, RowSettings, row_seed

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])  # (V,)


def draw(settings: list[RowSettings], steps: int) -> list[list[int]]:
    """`steps` calls of one sampler, as generate makes them: (B, steps) token ids."""
    rs = RowSampler(settings)
    scores = LOGITS.repeat(len(settings), 1)  # (B, V)
    out = [[] for _ in settings]
    for _ in range(steps):
        masked = rs(torch.zeros(len(settings), 1, dtype=torch.long), scores)  # (B, V)
        picked = masked.argmax(dim=-1)
        assert torch.isfinite(masked).sum(dim=-1).tolist() == [1] * len(settings), "one token left per row"
        for b, t in enumerate(picked.tolist()):
            out[b].append(t)
    return out


def test_frequencies_follow_the_tempered_softmax():
    n = 6000
    for temp in (1.0, 0.5):
        (got,) = draw([RowSettings(temp, 1.0, None, row_seed(11, 0))], n)
        want = (LOGITS / temp).softmax(-1).tolist()
        for tok, p in enumerate(want):
            freq = got.count(tok) / n
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (temp, tok, freq, p)


def test_top_k_top_p_and_greedy_per_row():
    rows = [RowSettings(1.0, 1.0, 2, row_seed(1, 0)),  # top-2: tokens 0 and 1 only
            RowSettings(1.0, 0.6, None, row_seed(1, 1)),  # top-p 0.6: p(0)=.55 < .6, so 0 and 1
            RowSettings(0.0, 1.0, None, row_seed(1, 2)),  # greedy
            RowSettings(1.0, 1.0, None, row_seed(1, 3))]  # everything
    got = draw(rows, 400)
    assert set(got[0]) == {0, 1}
    assert set(got[1]) == {0, 1}
    assert set(got[2]) == {0}
    assert set(got[3]) >= {0, 1, 2, 3}


def test_a_rows_draws_depend_on_its_seed_only():
    a = RowSettings(0.9, 1.0, None, row_seed(5, 0))
    alone = draw([a], 50)[0]
    beside = draw([RowSettings(0.0, 1.0, 3, row_seed(9, 0)), a, RowSettings(1.5, 0.5, None, row_seed(None, 0))], 50)[1]
    assert alone == beside
    assert draw([RowSettings(0.9, 1.0, None, row_seed(5, 1))], 50)[0] != alone, "row index changes the stream"
    assert row_seed(2**70, 0) < 2**64 and row_seed(-3, 0) >= 0  # any client seed maps into 64 bits
