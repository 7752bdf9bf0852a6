"""The page's server side over real HTTP: its files, its keys, the playground stream, the recent
searches. A real server and Engine over scripted parts (tests/support/scripted.py): the tree's shape is
known and a search takes milliseconds. The browser itself: tests/system/test_ui_browser.py."""
from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import openai
import pytest

from tests.support.scripted import ScriptedSampler, fake_config, scripted_engine
from w2s.proxy.api.job import Job
from w2s.proxy.core.config import UIConfig
from w2s.proxy.core.types import Prompt
from w2s.proxy.server.recent import RecentSearches
from w2s.proxy.server.ui import asset_bytes
from w2s.proxy.server.ui.routes import ASSETS

KEY = "sk-ui-test-0123456789"
SEARCH = {"model": "fake-cbs", "prompt": "Once upon a time", "w2s": {"w": 2, "k": 2, "l": 1, "max_tokens": 3}}


@pytest.fixture
def ui_server(fresh_servers, server_thread):
    """ui_server(ui={...}, keys=[...], **sampler_kw) -> a started server over scripted parts."""

    def make(ui: dict | None = None, keys: list[str] | None = None, **sampler_kw):
        config = fake_config(api_keys=keys or [])
        config.ui = UIConfig(**(ui or {}))
        engine = scripted_engine(config, ScriptedSampler("up", **sampler_kw))
        server_thread.run(engine.start())
        return fresh_servers(config, engine)

    return make


def auth(key: str = KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def test_the_page_is_its_own_files_with_a_policy_that_allows_only_this_server(ui_server):
    srv = ui_server()
    status, headers, body = srv.get("/ui")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    referenced = set(re.findall(r'(?:src|href)="/ui/assets/([^"]+)"', body.decode()))
    assert referenced == set(ASSETS) - {"index.html"}
    for name in referenced:
        status, headers, got = srv.get(f"/ui/assets/{name}")
        assert status == 200 and got == asset_bytes(name) and "Content-Security-Policy" in headers
    # No CDN, no font service: the only absolute URL in any file is the SVG namespace.
    urls = {u for name in ASSETS for u in re.findall(r"https?://[^\s'\"`)]+", asset_bytes(name).decode())}
    assert urls <= {"http://www.w3.org/2000/svg"}
    status, _, body = srv.get("/ui/assets/secrets.txt")
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"


def test_the_page_api_takes_the_same_keys_as_v1_and_its_files_stay_open(ui_server):
    srv = ui_server(keys=[KEY])
    assert srv.get("/ui")[0] == 200 and srv.get("/ui/assets/app.js")[0] == 200  # no data in them
    for path in ("/ui/api/info", "/ui/api/searches", "/ui/api/searches/x"):
        status, headers, body = srv.get(path)
        assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"
        assert srv.get(path, auth("sk-wrong"))[0] == 401
    assert srv.post("/ui/api/search", SEARCH)[0] == 401
    assert srv.get("/ui/api/info", auth())[0] == 200
    assert srv.get("/ui/api/info", {"x-api-key": KEY})[0] == 200
    info = json.loads(srv.get("/ui/api/info", auth())[2])
    assert info["ready"] and [r["name"] for r in info["routes"]] == ["fake-cbs", "fake-pass"]
    assert info["routes"][0]["search"] == {"w": 2, "k": 2, "l": 1, "max_tokens": 8} and info["trace_version"] == 2
    assert "pid" in info["replica"] and KEY not in json.dumps(info)


def test_the_page_can_be_switched_off(ui_server):
    srv = ui_server(ui={"enabled": False})
    for path in ("/ui", "/ui/assets/app.js", "/ui/api/info"):
        assert srv.get(path)[0] == 404
    assert srv.post("/ui/api/search", SEARCH)[0] == 404
    assert srv.post("/v1/completions", {"model": "fake-cbs", "prompt": "x"})[0] == 200  # the API is not


def test_the_playground_streams_every_round_then_the_trace_it_keeps(ui_server):
    srv = ui_server(keys=[KEY], seconds=0.05)
    status, headers, raw = srv.post("/ui/api/search", SEARCH, auth())
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-w2s-route"] == "fake-cbs" and headers["x-w2s-mode"] == "cbs"
    events = sse_events(raw)
    kinds = [e for e, _ in events]
    assert kinds == ["round", "round", "round", "done"]
    done = events[-1][1]
    trace = done["trace"]
    assert [data for e, data in events if e == "round"] == trace["rounds"]
    assert trace["prompt"] == {"text": "Once upon a time", "chars": 16, "truncated": False}
    assert trace["params"]["w"] == 2 and trace["params"]["max_tokens"] == 3
    assert trace["answers"][0]["text"] == " alpha0 beta0 gamma0" and trace["answers"][0]["path"] == [0, 0, 0]
    kept = json.loads(srv.get(f"/ui/api/searches/{done['search_id']}", auth())[2])
    assert kept == trace  # the prompt is short enough to keep whole


def test_the_playground_runs_what_the_api_runs(ui_server):
    srv = ui_server()
    page = sse_events(srv.post("/ui/api/search", {**SEARCH, "chat": True})[2])[-1][1]["trace"]
    api = openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0).chat.completions.create(
        model="fake-cbs", messages=[{"role": "user", "content": SEARCH["prompt"]}],
        extra_body={"w2s": {**SEARCH["w2s"], "trace": True}})
    assert timeless(page) == timeless(api.model_extra["w2s"])


def timeless(trace: dict) -> dict:
    """A trace without its clock readings (the one thing two runs of a search differ in)."""
    return {**trace, "rounds": [{k: v for k, v in rd.items() if not k.endswith("_seconds")} for rd in trace["rounds"]]}


def test_bad_playground_requests_get_openai_shaped_errors_and_the_server_stays_up(ui_server):
    srv = ui_server()
    cases = [({**SEARCH, "w2s": {"w": 0}}, 400, "w"), ({**SEARCH, "w2s": {"beams": 2}}, 400, "w2s.beams"),
             ({**SEARCH, "prompt": ""}, 400, "prompt"), ({**SEARCH, "temperature": 1}, 400, "temperature"),
             ({**SEARCH, "model": "nope"}, 404, "model"), (b"{not json", 400, None)]
    for body, status, param in cases:
        got, _, raw = srv.post("/ui/api/search", body)
        err = json.loads(raw)["error"]
        assert got == status and err["param"] == param and err["message"], (body, raw)
    assert srv.post("/ui/api/search", SEARCH)[0] == 200


def test_a_failure_after_the_first_round_is_an_error_event(ui_server):
    srv = ui_server(fail_at_tokens=1)  # the second round's draws fail
    status, _, raw = srv.post("/ui/api/search", SEARCH)
    events = sse_events(raw)
    assert status == 200 and [e for e, _ in events] == ["round", "error"]
    assert events[-1][1]["error"]["type"] == "upstream_error"
    assert json.loads(srv.get("/ui/api/searches")[2])["searches"] == []  # only finished searches are kept


async def test_leaving_the_playground_stream_cancels_the_search(ui_server):
    srv = ui_server(seconds=0.3)
    sampler = srv.engine.samplers["up"]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{srv.base}/ui/api/search", json={**SEARCH, "w2s": {"l": 1, "max_tokens": 8}}) as r:
            async for line in r.content:
                if line.startswith(b"event: round"):
                    break  # the page's Stop button: the fetch is aborted after round 0
    for _ in range(100):
        if sampler.cancelled:
            break
        await asyncio.sleep(0.05)
    assert sampler.cancelled == 1 and sampler.calls < 8  # the draw in flight was cancelled, no more followed
    assert srv.metrics()['w2s_searches_total{mode="cbs",outcome="cancelled",route="fake-cbs"}'] == 1
    assert json.loads(srv.get("/ui/api/searches")[2])["searches"] == []


def test_recent_searches_are_bounded_newest_first_cut_and_keyless(ui_server):
    srv = ui_server(ui={"recent_searches": 3, "prompt_chars": 10}, keys=[KEY])
    client = openai.OpenAI(base_url=srv.v1, api_key=KEY, max_retries=0)
    for i in range(5):
        client.completions.create(model="fake-cbs", prompt=f"prompt number {i} and more", max_tokens=2)
    listing = json.loads(srv.get("/ui/api/searches", auth())[2])
    assert listing["capacity"] == 3 and "pid" in listing["replica"]
    got = listing["searches"]
    assert [s["prompt"] for s in got] == ["prompt num"] * 3 and all(s["prompt_truncated"] for s in got)
    assert [s["created"] for s in got] == sorted((s["created"] for s in got), reverse=True)
    traces = [json.loads(srv.get(f"/ui/api/searches/{s['id']}", auth())[2]) for s in got]
    assert [t["prompt"] for t in traces] == [{"text": "prompt num", "chars": 24, "truncated": True}] * 3
    assert "number 4" not in json.dumps(traces) and KEY not in json.dumps([listing, traces])
    status, _, body = srv.get("/ui/api/searches/search_gone", auth())
    assert status == 404 and json.loads(body)["error"]["code"] == "search_not_found"


def test_recent_searches_zero_keeps_none(ui_server):
    srv = ui_server(ui={"recent_searches": 0})
    done = sse_events(srv.post("/ui/api/search", SEARCH)[2])[-1][1]
    assert done["search_id"] is None and done["trace"]["answers"]
    assert json.loads(srv.get("/ui/api/searches")[2]) == {"replica": json.loads(srv.get("/ui/api/info")[2])["replica"],
                                                          "capacity": 0, "searches": []}


async def test_the_ring_buffer_drops_the_oldest_past_its_byte_budget():
    engine = scripted_engine()
    await engine.start()
    plan = engine.plan("fake-cbs", {"max_tokens": 2})
    job = Job(plan, Prompt.raw("x"), trace=False)
    result = await engine.run(plan, job.prompt)
    await engine.aclose()
    probe = RecentSearches(1, 10**9, 200)
    size = len(probe.trace(probe.add(result, job)))
    recent = RecentSearches(10, int(size * 2.5), 200)
    ids = [recent.add(result, job) for _ in range(4)]
    assert len(recent) == 2 and [s["id"] for s in recent.summaries()] == ids[:1:-1]
    assert recent.trace(ids[0]) is None
    assert RecentSearches(10, size - 1, 200).add(result, job) is None  # larger than the whole budget: not kept
