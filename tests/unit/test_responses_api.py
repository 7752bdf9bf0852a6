"""POST /v1/responses, GET/DELETE /v1/responses/{id}: the openai SDK against a real server over
scripted parts (tests/support/scripted.py). The input items, the store and previous_response_id, the
stream's events, what today's clients send that changes nothing, and 400s for what would."""
from __future__ import annotations

import json

import openai
import pytest

from tests.support.scripted import ScriptedSampler, ScriptedScorer, fake_config, scripted_engine
from w2s.proxy.core.config import ResponsesConfig
from w2s.proxy.core.config_load import parse_config
from w2s.proxy.core.errors import NotFound
from w2s.proxy.server.response_store import ResponseStore

# Every event of one streamed answer, in order (the deltas between content_part.added and output_text.done).
OPENING = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
           "response.completed"]


@pytest.fixture
def fake(fresh_servers, server_thread):
    """fake(responses={...}, **sampler_kw) -> (server, scripted upstream)."""

    engines = []

    def make(responses: dict | None = None, **sampler_kw):
        up = ScriptedSampler("up", **sampler_kw)
        data = fake_config().model_dump(mode="json")
        config = parse_config({**data, "responses": responses or {}}, "fake")
        engine = scripted_engine(config, up, ScriptedScorer("g"))
        server_thread.run(engine.start())
        engines.append(engine)
        return fresh_servers(engine.config, engine), up

    yield make
    for engine in engines:
        server_thread.run(engine.aclose())


def oai(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)


def test_a_string_input_gets_a_response_object(fake):
    srv, _ = fake()
    raw = oai(srv).responses.with_raw_response.create(model="fake-cbs", input="hi")
    r = raw.parse()
    assert r.object == "response" and r.id.startswith("resp_") and r.model == "fake-cbs"
    (msg,) = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].type == "output_text" and r.output_text == msg.content[0].text
    assert r.output_text == " alpha0 beta0 gamma0 delta0 epsilon0 zeta0 eta0 theta0"  # the search's best
    # 8 words at the route's max_tokens 8: a limit the client did not set, so completed, and said so.
    assert r.status == "completed" and r.incomplete_details is None and msg.status == "completed"
    assert "reached the route's max_tokens (8)" in " ".join(r.model_extra["w2s"]["notes"])
    assert r.usage.output_tokens == 8 and r.usage.total_tokens == r.usage.input_tokens + 8
    assert raw.headers["x-w2s-mode"] == "cbs" and raw.headers["x-w2s-route"] == "fake-cbs"


@pytest.mark.parametrize("limit", [{"max_output_tokens": 5}, {"extra_body": {"w2s": {"max_tokens": 5}}}])
def test_an_answer_cut_by_the_clients_own_limit_is_incomplete(fake, limit):
    srv, _ = fake()
    r = oai(srv).responses.create(model="fake-cbs", input="hi", **limit)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.usage.output_tokens == 5


def test_an_answer_that_stops_is_completed(fake):
    srv, _ = fake(script=lambda prefix, s, limit: __import__("tests.support.scripted", fromlist=["Chunk"])
                  .Chunk(" done", "stop", 1, 3))
    r = oai(srv).responses.create(model="fake-cbs", input="hi")
    assert r.status == "completed" and r.incomplete_details is None and r.output_text == " done"
    assert r.output[0].status == "completed"


def test_items_and_instructions_reach_the_models_as_one_conversation(fake):
    srv, up = fake()
    oai(srv).responses.create(model="fake-pass", instructions="Be brief.", input=[
        {"role": "developer", "content": "Plain words."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Name a "},
                                                        {"type": "input_text", "text": "film."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Up."}],
         "id": "msg_1", "status": "completed"},
        {"type": "function_call", "call_id": "c1", "name": "year", "arguments": '{"film": "Up"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "2009"},
        {"role": "user", "content": "Another one?"}])
    assert list(up.requests[-1].prompt.messages) == [
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Plain words."},
        {"role": "user", "content": "Name a film."},
        # A message and the call after it are one assistant turn; the result is a tool turn (docs/tools.md).
        {"role": "assistant", "content": "Up.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "year", "arguments": '{"film": "Up"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2009"}, {"role": "user", "content": "Another one?"}]


def test_standard_fields_and_w2s_options_reach_the_search(fake):
    srv, up = fake()
    r = oai(srv).responses.create(model="fake-cbs", input="hi", max_output_tokens=3, temperature=0.3, top_p=0.9,
                                  extra_body={"w2s": {"seed": 7, "stop": ["gamma"], "trace": True}})
    req = up.requests[0]
    assert (req.temperature, req.top_p, req.stop) == (0.3, 0.9, ("gamma",)) and req.seed is not None
    assert r.model_extra["w2s"]["params"]["max_tokens"] == 3 and r.model_extra["w2s"]["params"]["seed"] == 7
    assert r.max_output_tokens == 3 and r.temperature == 0.3


def test_w2s_n_returns_one_message_per_answer(fake):
    srv, up = fake()
    r = oai(srv).responses.create(model="fake-pass", input="hi", extra_body={"w2s": {"n": 2}})
    texts = [m.content[0].text for m in r.output]
    assert len(texts) == 2 and texts[0] != texts[1] and r.output_text == "".join(texts)
    oai(srv).responses.create(model="fake-pass", input="more", previous_response_id=r.id)
    assert up.requests[-1].prompt.messages[1] == {"role": "assistant", "content": texts[0]}  # the best goes on


# --- stored responses -------------------------------------------------------------


def test_a_stored_response_is_read_back_and_continued(fake):
    srv, up = fake()
    c = oai(srv)
    first = c.responses.create(model="fake-pass", input="Name a film.", instructions="Be brief.")
    assert c.responses.retrieve(first.id).model_dump() == first.model_dump()
    c.responses.create(model="fake-pass", input=[{"role": "user", "content": "Another?"}],
                       previous_response_id=first.id)
    # The stored turns, its answer, the new turn; instructions are not carried over (as at OpenAI).
    assert list(up.requests[-1].prompt.messages) == [
        {"role": "user", "content": "Name a film."}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "Another?"}]


def test_a_chain_of_previous_response_ids_keeps_every_turn(fake):
    srv, up = fake()
    c = oai(srv)
    r1 = c.responses.create(model="fake-pass", input="one")
    r2 = c.responses.create(model="fake-pass", input="two", previous_response_id=r1.id)
    c.responses.create(model="fake-pass", input="three", previous_response_id=r2.id)
    roles = [(m["role"], m["content"]) for m in up.requests[-1].prompt.messages]
    assert roles == [("user", "one"), ("assistant", r1.output_text), ("user", "two"),
                     ("assistant", r2.output_text), ("user", "three")]


def test_store_false_keeps_nothing_and_delete_forgets(fake):
    srv, _ = fake()
    c = oai(srv)
    kept = c.responses.create(model="fake-pass", input="hi")
    unkept = c.responses.create(model="fake-pass", input="hi", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unkept.id)
    c.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(kept.id)


def test_an_unknown_id_is_a_404_in_openais_shape_naming_it(fake):
    srv, _ = fake()
    status, headers, body = srv.get("/v1/responses/resp_nope")
    err = json.loads(body)["error"]
    assert status == 404 and "resp_nope" in err["message"] and err["code"] == "response_not_found"
    assert set(err) == {"message", "type", "param", "code"} and headers["x-should-retry"] == "false"
    with pytest.raises(openai.NotFoundError) as e:
        oai(srv).responses.create(model="fake-pass", input="hi", previous_response_id="resp_gone")
    assert "resp_gone" in e.value.body["message"] and e.value.body["param"] == "previous_response_id"


def test_the_store_is_bounded_by_its_config(fake):
    srv, _ = fake(responses={"store_size": 1})
    c = oai(srv)
    old = c.responses.create(model="fake-pass", input="one")
    new = c.responses.create(model="fake-pass", input="two")
    assert c.responses.retrieve(new.id).id == new.id
    with pytest.raises(openai.NotFoundError, match=old.id):
        c.responses.retrieve(old.id)


def test_the_store_forgets_by_size_and_by_age():
    now = [0.0]
    store = ResponseStore(ResponsesConfig(store_size=2, store_seconds=10), clock=lambda: now[0])
    for i in range(3):
        store.put(f"r{i}", {"id": f"r{i}"}, [])
        now[0] += 4
    assert len(store) == 2 and store.get("r2").body == {"id": "r2"}
    with pytest.raises(NotFound, match="r0"):
        store.get("r0")  # the oldest, past the size
    now[0] += 3  # r1 stored at t=4, r2 at t=8, now t=15
    with pytest.raises(NotFound, match="r1"):
        store.get("r1")
    assert store.get("r2").body == {"id": "r2"}
    assert len(ResponseStore(ResponsesConfig(store_size=0))) == 0


def test_the_store_section_is_strict():
    from w2s.proxy.core.errors import ConfigError

    with pytest.raises(ConfigError, match="responses.store_sise"):
        parse_config({**fake_config().model_dump(mode="json"), "responses": {"store_sise": 3}})


# --- streaming ----------------------------------------------------------------------


def test_the_stream_is_openais_event_sequence_and_the_prefix_streams_by_round(fake):
    srv, _ = fake()
    with oai(srv).responses.stream(model="fake-cbs", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    with oai(srv).responses.stream(model="fake-cbs", input="hi", max_output_tokens=4) as stream:
        cut = stream.get_final_response()  # response.completed, status incomplete: the SDK's helper reads it
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    kinds = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert kinds == OPENING + ["response.output_text.delta"] * len(deltas) + CLOSING
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len(deltas) > 2, "the committed prefix went out round by round, not all at the end"
    assert "".join(deltas) == final.output_text == events[-4].text
    assert final.status == "completed" and final.output[0].status == "completed"
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert item_ids == {final.output[0].id}
    assert oai(srv).responses.retrieve(final.id).output_text == final.output_text  # a stream is stored too


def test_a_streamed_response_continues_from_its_id(fake):
    srv, up = fake()
    with oai(srv).responses.stream(model="fake-pass", input="one") as stream:
        first = stream.get_final_response()
    oai(srv).responses.create(model="fake-pass", input="two", previous_response_id=first.id)
    assert [m["content"] for m in up.requests[-1].prompt.messages] == ["one", first.output_text, "two"]


def test_a_failure_after_the_stream_began_is_response_failed(fake):
    srv, _ = fake(fail_at_tokens=2)  # l=1: the third round fails
    status, headers, body = srv.post("/v1/responses", {"model": "fake-cbs", "input": "hi", "stream": True})
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and [e["type"] for e in events[:4]] == OPENING
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert "scripted upstream down" in last["response"]["error"]["message"]


def test_a_failure_before_any_output_is_a_plain_http_error(fake):
    srv, _ = fake(fail_at_tokens=0)
    with pytest.raises(openai.APIStatusError) as e:
        with oai(srv).responses.stream(model="fake-cbs", input="hi") as stream:
            list(stream)
    assert e.value.status_code == 502


# --- what clients send --------------------------------------------------------------

CODEX_FIELDS = {  # what the Codex CLI sends besides model, instructions, input and stream
    "tools": [{"type": "function", "name": "shell", "description": "Runs a command",
               "parameters": {"type": "object", "properties": {"command": {"type": "array"}}}, "strict": False}],
    "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "019a-session",
    "text": {"verbosity": "medium"}, "client_metadata": {"session_id": "019a", "x-codex-window-id": "019a:0"},
}


def test_fields_that_change_nothing_are_accepted_and_named_in_the_notes(fake):
    srv, _ = fake()
    fields = {k: v for k, v in CODEX_FIELDS.items() if k not in ("tools", "tool_choice")}
    status, _, body = srv.post("/v1/responses", {"model": "fake-cbs", "input": "hi", **fields})
    r = json.loads(body)
    assert status == 200 and r["output_text"]
    notes = "\n".join(r["w2s"]["notes"])
    for key in ("reasoning", "include", "prompt_cache_key", "text.verbosity"):
        assert f"{key}: accepted and ignored" in notes, key
    assert r["tools"] == [] and r["store"] is False  # what the answer was made with
    # Its function tools are offered to the upstream: this one (local) has no tool API, a 400 naming the
    # route (tests/unit/test_tools_responses.py: the same to an upstream that has one).
    status, _, body = srv.post("/v1/responses", {"model": "fake-cbs", "input": "hi", **CODEX_FIELDS})
    err = json.loads(body)["error"]
    assert status == 400 and err["code"] == "tools_not_supported" and "'fake-cbs'" in err["message"]


@pytest.mark.parametrize("extra, param", [
    ({"text": {"format": {"type": "xml"}}}, "text.format"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "name": "shell"}}, "tool_choice"),
    ({"top_logprobs": 5}, "top_logprobs"),
    ({"frobnicate": True}, "frobnicate"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure"}]}, "input[1]"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"type": "function_call", "name": "x"}]}, "input[0].call_id"),
    ({"max_output_tokens": "8"}, "max_output_tokens"),
])
def test_what_would_change_the_answer_is_a_400_naming_it(fake, extra, param):
    srv, up = fake()
    status, _, body = srv.post("/v1/responses", {"model": "fake-cbs", "input": "hi", **extra})
    err = json.loads(body)["error"]
    assert status == 400 and err["param"] == param, err
    assert up.requests == []  # refused before any search
