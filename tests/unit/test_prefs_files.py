"""Preference files without models: reading them, the held-out split, the judge, and pairs from samples."""
from __future__ import annotations

import json

import pytest

from w2s.proxy.batch.judge import JudgeError, judge_all, load_judge
from w2s.proxy.batch.output import OutputFile
from w2s.proxy.batch.pairs import pair_of, rebuild_pairs, sample_identity
from w2s.proxy.core.errors import W2SError
from w2s.proxy.train.encode import held_out_split
from w2s.proxy.train.prefs import read_prefs

GOOD_TEXT = {"prompt": "Review it.", "chosen": "A joy.", "rejected": "A bore.", "id": "extra keys are fine"}
GOOD_CHAT = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Review it."}],
             "chosen": [{"role": "assistant", "content": "A joy."}],
             "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "A bore."}]}]}


def test_reads_both_forms_and_reports_bad_lines_with_their_numbers(tmp_path):
    lines = [
        json.dumps(GOOD_TEXT),                                                      # 1
        json.dumps(GOOD_CHAT),                                                      # 2
        "",                                                                         # 3: blank, ignored
        "{not json",                                                                # 4
        json.dumps({"prompt": "x", "chosen": "a"}),                                 # 5
        json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}),          # 6
        json.dumps({"prompt": [], "chosen": "a", "rejected": "b"}),                 # 7
        json.dumps({**GOOD_CHAT, "chosen": [{"role": "user", "content": "a"}]}),    # 8
        json.dumps([1, 2]),                                                         # 9
        json.dumps({"prompt": [{"role": "wizard", "content": "x"}], "chosen": "a", "rejected": "b"}),  # 10
    ]
    p = tmp_path / "prefs.jsonl"
    p.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")  # 11: not UTF-8
    f = read_prefs(p)
    assert [x.line for x in f.prefs] == [1, 2]
    text, chat = f.prefs
    assert text.prompt.text == "Review it." and (text.chosen, text.rejected) == ("A joy.", "A bore.")
    assert chat.prompt.messages[0]["content"] == "Be brief." and chat.rejected == "A bore."
    reasons = {b.line: b.reason for b in f.bad}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11]
    assert "not valid JSON" in reasons[4]
    assert "missing 'rejected'" in reasons[5]
    assert "same text" in reasons[6]
    assert "non-empty list" in reasons[7]
    assert "one assistant message" in reasons[8]
    assert "role one of" in reasons[10]
    assert "not UTF-8" in reasons[11]


def test_a_trailing_assistant_message_is_a_prefill(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"prompt": [{"role": "user", "content": "Review it."},
                                        {"role": "assistant", "content": "Honestly,"}],
                             "chosen": " a joy.", "rejected": " a bore."}) + "\n")
    (pref,) = read_prefs(p).prefs
    assert pref.prompt.prefill == "Honestly," and pref.chosen == " a joy."


def _prefs(prompts: list[str]):
    from w2s.proxy.core.types import Prompt
    from w2s.proxy.train.prefs import Preference

    return [Preference(i + 1, Prompt.raw(p), f"good {i}", f"bad {i}") for i, p in enumerate(prompts)]


def test_held_out_split_keeps_prompts_apart_and_is_stable():
    prefs = _prefs([f"prompt {i % 10}" for i in range(40)])  # 10 prompts, 4 pairs each
    train, held, by_prompt = held_out_split(prefs, 0.2, seed=3)
    assert by_prompt and len(held) == 8 and sorted(train + held) == list(range(40))
    assert not {prefs[i].prompt_key for i in train} & {prefs[i].prompt_key for i in held}
    assert held_out_split(prefs, 0.2, seed=3) == (train, held, by_prompt)  # a resumed run holds out the same
    assert held_out_split(prefs, 0.2, seed=4)[1] != held


def test_held_out_split_with_one_prompt_splits_by_pair_and_needs_two_pairs():
    train, held, by_prompt = held_out_split(_prefs(["same"] * 10), 0.3, seed=0)
    assert not by_prompt and len(held) == 3 and len(train) == 7
    assert held_out_split(_prefs(["a", "b"]), 0.01, seed=0)[1]  # at least one held out
    with pytest.raises(ValueError, match="at least 2"):
        held_out_split(_prefs(["a"]), 0.1, seed=0)


def test_judge_loading_and_its_errors(tmp_path, monkeypatch):
    (tmp_path / "myjudge.py").write_text(
        "def length(t):\n    return len(t)\n"
        "def broken(t):\n    raise RuntimeError('no')\n"
        "def words(t):\n    return 'many'\n"
        "def nan(t):\n    return float('nan')\n")
    assert load_judge(f"{tmp_path / 'myjudge.py'}:length")("abc") == 3
    monkeypatch.chdir(tmp_path)  # MODULE:FUNCTION finds modules in the current directory
    judge = load_judge("myjudge:length")
    assert judge_all(judge, ["a", "abc"]) == [1.0, 3.0]
    for spec, msg in [("myjudge", "MODULE:FUNCTION"), ("nomodule_xyz:f", "no module named"),
                      ("myjudge:missing", "no function"), ("nofile.py:f", "file not found")]:
        with pytest.raises(W2SError, match=msg):
            load_judge(spec)
    for name, msg in [("broken", "raised RuntimeError: no"), ("words", "not a number"), ("nan", "not a finite")]:
        with pytest.raises(JudgeError, match=msg):
            judge_all(load_judge(f"myjudge:{name}"), ["x"])


def _sample(cid: str, prompt, scored: list[tuple[str, float]]) -> dict:
    return {"custom_id": cid, "line": 1, "prompt": prompt, "route": "r", "judge": "j:f",
            "answers": [{"text": t, "score": s} for t, s in scored]}


def test_pair_is_the_best_and_the_worst_above_the_margin():
    rec = _sample("a", "Review it.", [("ok", 0.1), ("great", 0.9), ("awful", -0.7), ("fine", 0.3)])
    pair, why = pair_of(rec, margin=0.5)
    assert why == "pair" and (pair["chosen"], pair["rejected"]) == ("great", "awful")
    assert (pair["chosen_score"], pair["rejected_score"]) == (0.9, -0.7)
    assert pair_of(rec, margin=1.6) == (None, "below_margin")
    assert pair_of(_sample("b", "x", [("same", 1.0), ("same", 0.0)]), 0.0) == (None, "too_few")
    chat = pair_of(_sample("c", [{"role": "user", "content": "x"}], [("a", 1.0), ("b", 0.0)]), 0.0)[0]
    assert chat["chosen"] == [{"role": "assistant", "content": "a"}]


def test_pairs_are_rebuilt_from_the_samples_log_in_input_order(tmp_path):
    samples, out = tmp_path / "s.jsonl", tmp_path / "p.jsonl"
    log = OutputFile(samples, identify=sample_identity)
    log.open()
    log.append(_sample("b", "B", [("x", 1.0), ("y", 0.0)]))
    log.append(_sample("a", "A", [("x", 0.2), ("y", 0.1)]))
    log.close()
    st = rebuild_pairs(samples, out, ["a", "b", "c"], margin=0.0)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    assert (st.pairs, st.not_sampled) == (2, 1)
    st = rebuild_pairs(samples, out, ["a", "b", "c"], margin=0.5)  # a new margin: no sampling, one pair
    assert (st.pairs, st.below_margin) == (1, 1) and len(out.read_text().splitlines()) == 1
