"""The local upstream's prompt KV cache (providers/prefix_cache.py): which tokens it shares, and the
inputs that follow it. That it draws what the plain call draws: tests/integration/test_long_inputs.py."""
from __future__ import annotations

from w2s.providers import prefix_cache as pc


def test_shared_len_leaves_every_row_a_token_and_keeps_one_key_per_prompt():
    prompt = [1, 2, 3, 4, 5]
    assert pc.shared_len([prompt, prompt + [6]], prompt) == 4  # round one: prompt + ""
    assert pc.shared_len([prompt + [6], prompt + [7, 8]], prompt) == 4  # later rounds: the same key
    assert pc.shared_len([[1, 2, 9, 4, 5, 6]], prompt) == 2  # a merge inside the prompt


def test_inputs_put_pads_between_the_prefix_and_each_suffix():
    ids, mask = pc.inputs(3, [[1, 2, 3, 7], [1, 2, 3, 8, 9]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 0, 7], [1, 2, 3, 8, 9]]
    assert mask.tolist() == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]]
