"""What every search result must satisfy, round by round, whatever its parts."""
from __future__ import annotations

from w2s.proxy.core.types import SearchParams


def check_invariants(result, params: SearchParams):
    width = max(params.w, params.n)
    rounds = result.rounds
    assert rounds, "at least one round"
    first = rounds[0]
    assert all(c.parent is None for c in first.candidates)
    assert len(first.candidates) <= width * params.k
    for ri, rd in enumerate(rounds):
        texts = [(c.text, c.finished) for c in rd.candidates]
        assert len(texts) == len(set(texts)), "identical candidates appear once"
        kept = [c for c in rd.candidates if c.kept]
        eligible = [c for c in rd.candidates if c.cut_at is None]  # cut at a checkpoint (reject_at): never kept
        assert len(kept) == min(width, len(eligible))
        assert not any(c.kept for c in rd.candidates if c.cut_at is not None)
        if len(eligible) > 1:
            worst_kept = min(c.score for c in kept)
            assert all(c.score <= worst_kept + 1e-9 for c in eligible if not c.kept), "top W are kept"
        for c in rd.candidates:
            assert c.tokens <= params.max_tokens
            assert c.finished == (c.finish_reason is not None)
        if ri > 0:
            prev_kept = [c for c in rounds[ri - 1].candidates if c.kept]
            assert not all(c.finished or c.pruned for c in prev_kept), \
                "the search stops once every kept beam is finished or pruned"
            for c in rd.candidates:
                parent = rounds[ri - 1].candidates[c.parent]
                assert parent.kept
                assert c.text.startswith(parent.text)
                if parent.finished:
                    assert c.text == parent.text and c.finished  # carried over unchanged
            # every finished kept beam competes again
            for i, p in enumerate(rounds[ri - 1].candidates):
                if not p.kept:
                    continue
                if p.finished:
                    assert any(c.parent == i and c.text == p.text for c in rd.candidates)
                else:
                    n_children = sum(1 for c in rd.candidates if c.parent == i)
                    if p.pruned:  # given no continuation (k_tau with k_min 0, decide_after): its path ends
                        assert n_children == 0
                    else:
                        assert 1 <= n_children <= params.k
    last_kept = [c for c in rounds[-1].candidates if c.kept]
    assert all(c.finished or c.pruned for c in last_kept)
    best = max((c for c in last_kept if c.finished), key=lambda c: c.score if c.score is not None else 0)
    assert result.best.text == best.text
