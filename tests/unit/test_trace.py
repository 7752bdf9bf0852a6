"""The trace schema (proxy/api/trace.py): what the page draws, over a real Engine with scripted parts.

The scripted upstream writes one word per token ending in the draw's sibling
index; the scripted guide prefers 0s (tests/support/scripted.py), so every tree here is
small and known. About a second.
"""
from __future__ import annotations

import json

import pytest

from tests.support.scripted import ScriptedSampler, scripted_engine, words_chunk
from w2s.proxy.api.job import Job
from w2s.proxy.api.trace import TRACE_VERSION, answer_path, prompt_view, round_body, trace_body, traces_in
from w2s.proxy.core.types import CandidateTrace, Chunk, Prompt, RoundTrace

PROMPT = Prompt.raw("Once upon a time")


async def run(overrides: dict, sampler: ScriptedSampler | None = None, prompt: Prompt = PROMPT):
    """-> (trace body, the round bodies as the playground streamed them)."""
    engine = scripted_engine(sampler=sampler)
    await engine.start()
    plan = engine.plan("fake-cbs", overrides)
    streamed, previous = [], None

    def on_round(rd, kept):
        nonlocal previous
        streamed.append(round_body(rd, previous))
        previous = rd

    result = await engine.run(plan, prompt, on_round)
    await engine.aclose()
    return trace_body(result, Job(plan, prompt, trace=True)), streamed


def stops_early(prefix: str, sibling: int, limit: int) -> Chunk:
    """Draw 0 from the bare prompt stops at once (a finished beam that competes on); the rest go on."""
    if not prefix and sibling == 0:
        return Chunk(" end0", "stop", completion_tokens=1, prompt_tokens=5)
    return words_chunk(prefix, sibling, limit)


async def test_every_candidate_is_its_parent_plus_its_chunk():
    trace, _ = await run({"w": 2, "k": 2, "l": 2, "max_tokens": 6})
    assert trace["version"] == TRACE_VERSION == 2 and len(trace["rounds"]) == 3
    for r, rd in enumerate(trace["rounds"]):
        assert rd["upstream_calls"] == 1 and rd["upstream_completion_tokens"] == 8
        for i, c in enumerate(rd["candidates"]):
            assert c["index"] == i
            assert c["state"] == ("pruned" if not c["kept"] else "finished" if c["finished"] else "kept")
            if r == 0:
                assert c["parent"] is None and c["chunk"] == c["text"] and c["chunk_tokens"] == c["tokens"] == 2
                continue
            parent = trace["rounds"][r - 1]["candidates"][c["parent"]]
            assert parent["kept"] and c["text"] == parent["text"] + c["chunk"]
            assert c["chunk_tokens"] == c["tokens"] - parent["tokens"] == 2 and not c["carried"]
    states = [c["state"] for c in trace["rounds"][-1]["candidates"]]
    assert states.count("finished") == 2 and states.count("pruned") == 2  # W=2 of 4, all at max_tokens


async def test_the_answer_path_walks_parent_edges_back_from_the_answer():
    trace, _ = await run({"w": 2, "k": 2, "l": 2, "max_tokens": 6, "n": 2})
    for answer in trace["answers"]:
        path = answer["path"]
        assert len(path) == 3 and None not in path and path[-1] == answer["candidate"]
        last = trace["rounds"][-1]["candidates"][path[-1]]
        assert last["text"] == answer["text"] and last["kept"]
        for r in (1, 2):
            assert trace["rounds"][r]["candidates"][path[r]]["parent"] == path[r - 1]
        assert "".join(trace["rounds"][r]["candidates"][i]["chunk"] for r, i in enumerate(path)) == answer["text"]
    assert trace["answers"][0]["text"] == " alpha beta0 gamma delta0 epsilon zeta0"  # the guide's favourite


async def test_a_finished_beam_is_carried_into_the_next_round_with_an_empty_chunk():
    trace, _ = await run({"w": 2, "k": 2, "l": 2, "max_tokens": 4}, ScriptedSampler("up", script=stops_early))
    first, second = trace["rounds"][0]["candidates"], trace["rounds"][1]["candidates"]
    assert first[0]["text"] == " end0" and first[0]["state"] == "finished" and first[0]["finish_reason"] == "stop"
    (carried,) = [c for c in second if c["carried"]]
    assert carried["parent"] == 0 and carried["chunk"] == "" and carried["chunk_tokens"] == 0
    assert carried["text"] == " end0" and carried["finished"]
    assert all(not c["carried"] for c in first)


async def test_streamed_rounds_are_the_traces_rounds():
    trace, streamed = await run({"w": 2, "k": 2, "l": 1, "max_tokens": 3})
    assert json.loads(json.dumps(streamed)) == trace["rounds"]


async def test_an_upstream_that_cannot_continue_gives_whole_answers_without_parents():
    trace, _ = await run({"w": 1, "k": 3, "l": 2, "max_tokens": 4}, ScriptedSampler("up", exact=False))
    assert trace["mode"] == "bon-approx" and len(trace["rounds"]) == 1
    for c in trace["rounds"][0]["candidates"]:
        assert c["parent"] is None and c["chunk"] == c["text"] and c["finished"]
    assert trace["answers"][0]["path"] == [trace["answers"][0]["candidate"]]


def test_prompt_view_joins_chat_turns_and_cuts_to_the_limit():
    chat = Prompt.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Review it."},
                        {"role": "assistant", "content": "It was"}])
    text = "system: Be kind.\nuser: Review it.\nassistant: It was"
    assert prompt_view(chat, None) == {"text": text, "chars": len(text), "truncated": False}
    assert prompt_view(PROMPT, 4) == {"text": "Once", "chars": 16, "truncated": True}
    assert prompt_view(PROMPT, 0)["text"] == "" and prompt_view(PROMPT, 16)["truncated"] is False


def hand_round(index: int, parents: list[int | None]) -> RoundTrace:
    """A round whose candidate i has parent parents[i] (texts and scores do not matter to the path)."""
    cands = [CandidateTrace(f"r{index}c{i}", p, 0.0, False, True) for i, p in enumerate(parents)]
    return RoundTrace(index, cands, 1, 0, 0, 0, 0.0, 0.0)


def test_answer_path_stops_where_the_parents_run_out():
    # Round 2 fell back to whole answers (no parents): the path before it is unknown, not guessed.
    rounds = [hand_round(0, [None, None]), hand_round(1, [1, 0]), hand_round(2, [None, 0])]
    assert answer_path(rounds, 1) == [1, 0, 1]  # a whole chain: round 2 cand 1 <- round 1 cand 0 <- round 0 cand 1
    assert answer_path(rounds, 0) == [None, None, 0]  # stops at round 2, whose candidate has no parent
    # A parent index that is not in the round before (a trace cut short) ends the walk there too.
    assert answer_path([hand_round(0, [None]), hand_round(1, [5])], 0) == [None, 0]
    # No answer, or an answer index past the last round: no path at all; no rounds, an empty one.
    assert answer_path(rounds, None) == [None, None, None]
    assert answer_path(rounds, 7) == [None, None, None]
    assert answer_path([], None) == []


async def test_traces_are_found_in_every_file_shape():
    trace, _ = await run({"w": 2, "k": 2, "l": 2, "max_tokens": 4})
    body = {"id": "cmpl-1", "choices": [], "w2s": trace}
    record = {"id": "batch_req_1", "custom_id": "review-7", "response": {"status_code": 200, "body": body},
              "error": None}
    failed = {"id": "batch_req_2", "custom_id": "x", "response": {"status_code": 400, "body": {"error": {}}},
              "error": {"code": "bad"}}
    assert [label for label, _ in traces_in(json.dumps(trace))] == ["trace"]
    assert list(traces_in(json.dumps(body)))[0][1] == trace
    jsonl = "\n".join(json.dumps(x) for x in (record, failed, body)) + "\nnot json\n"
    assert [label for label, _ in traces_in(jsonl)] == ["review-7", "line 3"]
    assert list(traces_in('{"choices": []}')) == [] and list(traces_in("")) == []


@pytest.mark.parametrize("score", [float("-inf"), float("nan")])
async def test_non_finite_scores_are_null(score):
    from tests.support.scripted import ScriptedScorer

    engine = scripted_engine(scorer=ScriptedScorer("g", score=lambda item: score))
    await engine.start()
    plan = engine.plan("fake-cbs", {"w": 1, "k": 2, "l": 1, "max_tokens": 1})
    result = await engine.run(plan, PROMPT)
    await engine.aclose()
    trace = trace_body(result, Job(plan, PROMPT, trace=True))
    assert all(c["score"] is None for c in trace["rounds"][0]["candidates"])
    json.dumps(trace, allow_nan=False)  # valid JSON for any client
