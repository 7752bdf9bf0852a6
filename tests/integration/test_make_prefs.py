"""`w2s make-prefs` on the real local upstream: sample, judge, pair, resume."""
from __future__ import annotations

import json

from tests.support.cli import w2s, write_config
from tests.support.configs import make_config_dict
from w2s.proxy.batch.prefs import PrefsOptions, PrefsReport, make_prefs
from w2s.proxy.train.prefs import read_prefs

PROMPTS = [
    {"id": "raw", "prompt": "The movie I saw yesterday was", "max_tokens": 6},
    {"id": "chat", "messages": [{"role": "user", "content": "Review the film in one line."}], "max_tokens": 6},
    {"id": "prefill", "messages": [{"role": "user", "content": "Review the film."},
                                   {"role": "assistant", "content": "Honestly, it was"}], "max_tokens": 6},
]


def _files(tmp_path):
    inp = tmp_path / "prompts.jsonl"
    inp.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    (tmp_path / "judges.py").write_text("def length(text):\n    return float(len(text))\n")
    return inp, tmp_path / "prefs.jsonl"


def _opts(tmp_path, inp, out, **kw) -> PrefsOptions:
    return PrefsOptions(inp, out, "smol-plain", f"{tmp_path / 'judges.py'}:length", n=3, seed=7,
                        progress=False, **kw)


async def test_samples_judges_pairs_and_resumes(tmp_path, engine):
    """On the session's route smol-plain: SmolLM2 itself, passed through."""
    config = engine.config
    inp, out = _files(tmp_path)
    report = await make_prefs(config, _opts(tmp_path, inp, out), PrefsReport(), engine)
    assert report.sampled == 3 and not report.failed and report.pairs.pairs == 3
    samples = (tmp_path / "prefs.jsonl.samples.jsonl").read_text().splitlines()
    assert [json.loads(s)["custom_id"] for s in samples] == ["raw", "chat", "prefill"]
    for s in samples:
        answers = json.loads(s)["answers"]
        assert len(answers) == 3 and all(a["score"] == len(a["text"]) for a in answers)

    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    for p in pairs:
        assert p["chosen_score"] > p["rejected_score"]
    assert isinstance(pairs[0]["prompt"], str) and isinstance(pairs[0]["chosen"], str)
    assert pairs[2]["prompt"][-1] == {"role": "assistant", "content": "Honestly, it was"}
    assert pairs[2]["chosen"][0]["role"] == "assistant"
    prefs = read_prefs(out)  # what train-guide reads: every line a valid pair
    assert not prefs.bad and len(prefs.prefs) == 3 and prefs.prefs[2].prompt.prefill == "Honestly, it was"

    # A crash mid-write: one record complete, the second cut in half. The rerun repairs the log
    # and samples only what is missing.
    log = tmp_path / "prefs.jsonl.samples.jsonl"
    log.write_text(samples[0] + "\n" + samples[1][:40])
    report = await make_prefs(config, _opts(tmp_path, inp, out), PrefsReport(), engine)
    assert (report.skipped, report.sampled, report.pairs.pairs) == (1, 2, 3)
    assert len(log.read_text().splitlines()) == 3

    # A new margin rebuilds the pairs from the log without sampling anything.
    report = await make_prefs(config, _opts(tmp_path, inp, out, margin=1e9), PrefsReport(), engine)
    assert (report.sampled, report.skipped, report.pairs.below_margin) == (0, 3, 3)
    assert out.read_text() == ""


def test_usage_errors_are_one_line_and_cost_nothing(tmp_path):
    inp, out = _files(tmp_path)
    cfg = write_config(tmp_path, make_config_dict())
    judge = f"{tmp_path / 'judges.py'}:length"
    for args, needle in [
        (["--route", "nope", "--judge", judge], "nope"),
        (["--route", "passthrough", "--judge", "judges.py"], "MODULE:FUNCTION"),
        (["--route", "passthrough", "--judge", f"{tmp_path / 'judges.py'}:missing"], "no function 'missing'"),
        (["--route", "passthrough", "--judge", judge, "-n", "1"], "-n must be 2 or more"),
    ]:
        r = w2s("--config", cfg, "make-prefs", str(inp), "--out", str(out), *args)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not out.exists()
