"""The page in a real browser: headless Chromium (Debian's package) over the DevTools protocol.

1. The playground, against the embedded models behind an API key: the page asks for the key,
   runs a seeded CBS search, draws its rounds one by one before the answer arrives, and its
   final tree is the API's trace of that search node for node. No request leaves 127.0.0.1
   and the key is never in a URL.
2. A trace file, offline: `w2s view FILE` writes one self-contained page; opened from disk it
   draws the tree without any request; its file picker reads batch output (and version 1), and
   a file dropped on it opens too.

Screenshots go to $W2S_SCREENSHOTS (a directory) when set, else to the test's temp directory.
About a minute on 2 CPU cores, most of it the models' search.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest

from tests.support.cdp import Browser, require_chromium
from tests.support.configs import GUIDED, TEST_KEY
from tests.support.scripted import ScriptedSampler, scripted_engine
from tests.support.servers import LiveServer, http

PROMPT = "I watched this movie last night and"
# Three rounds of three tokens, seeded: the same search whoever asks for it.
PARAMS = {"w": 2, "k": 2, "l": 3, "max_tokens": 9, "seed": 11}

# Records every render of the tree and every change of the answer box, in order.
RECORDER = """(() => {
  window.renders = [];
  const now = () => performance.now();
  new MutationObserver((records) => { for (const r of records) for (const n of r.addedNodes)
    if (n.tagName === 'svg')
      window.renders.push({tree: +n.dataset.rounds, final: n.dataset.final === 'true', t: now()});
  }).observe(document.getElementById('tree'), {childList: true});
  new MutationObserver(() => window.renders.push({answer: !document.getElementById('answer').hidden, t: now()}))
    .observe(document.getElementById('answer'), {attributes: true, attributeFilter: ['hidden']});
  return true;
})()"""

NODES = """Array.from(document.querySelectorAll('#tree g.node')).map((g) => ({
  round: +g.dataset.round, index: +g.dataset.index, state: g.dataset.state, text: g.dataset.text,
  parent: g.dataset.parent === '' ? null : +g.dataset.parent,
  score: g.dataset.score === '' ? null : +g.dataset.score,
  label: g.querySelector('text.chunk').textContent, on_path: g.classList.contains('on-path')}))"""


def screenshot_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("W2S_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
async def browser(tmp_path):
    require_chromium()
    b = await Browser.start(tmp_path / "profile")
    yield b
    await b.close()


def fill(field: str, value) -> str:
    return (f"(() => {{ const e = document.getElementById({json.dumps(field)}); e.value = {json.dumps(str(value))};"
            " e.dispatchEvent(new Event('input')); return true; })()")


def expected_nodes(trace: dict) -> list[dict]:
    best = set(enumerate(trace["answers"][0]["path"]))
    return [{"round": r, "index": i, "state": c["state"], "text": c["text"], "parent": c["parent"],
             "score": c["score"], "on_path": (r, i) in best}
            for r, rd in enumerate(trace["rounds"]) for i, c in enumerate(rd["candidates"])]


def same_nodes(drawn: list[dict], trace: dict) -> None:
    want = expected_nodes(trace)
    assert len(drawn) == len(want)
    for got, exp in zip(sorted(drawn, key=lambda n: (n["round"], n["index"])), want):
        score = got.pop("score")
        label = got.pop("label")
        assert score == pytest.approx(exp.pop("score"), abs=1e-6) and got == exp
        chunk = trace["rounds"][exp["round"]]["candidates"][exp["index"]]["chunk"]
        shown = label.rstrip("…").replace("⏎", "\n").replace("⇥", "\t")
        assert chunk.startswith(shown) or label == "(finished, carried over)" or (label == "∅" and not chunk)


async def test_a_playground_search_in_a_real_browser(auth_live: LiveServer, browser, tmp_path):
    page = await browser.new_page()
    await page.goto(f"{auth_live.base}/ui")
    await enter_the_key(page)
    await search_and_watch_the_rounds(page)
    trace = await the_tree_is_the_apis_trace(page, auth_live)
    await hovering_shows_the_details(page, trace)
    await page.screenshot(screenshot_dir(tmp_path) / "ui-playground.png")
    # Every request stayed on 127.0.0.1, and the key rode in a header, never in a URL.
    requests = page.requests()
    hosts = {urlsplit(r["url"]).hostname for r in requests if not r["url"].startswith(("data:", "about:"))}
    assert hosts == {"127.0.0.1"}, hosts
    assert not any(TEST_KEY in r["url"] for r in requests)
    api_calls = [r for r in requests if "/ui/api/" in r["url"]]
    assert any(r["url"].endswith("/ui/api/search") and r["method"] == "POST" for r in api_calls)
    assert all(r["headers"].get("Authorization") == f"Bearer {TEST_KEY}" for r in api_calls[1:])
    assert page.script_errors() == [] and page.browser_errors() == []  # no policy violation either


async def enter_the_key(page) -> None:
    """No key yet: the page says it needs one (its data endpoints answered 401); typed in, the routes arrive."""
    await page.wait_for("document.getElementById('status').dataset.kind === 'warn'")
    assert "API key" in await page.evaluate("document.getElementById('status').textContent")
    await page.evaluate(fill("key", TEST_KEY))
    await page.evaluate("document.querySelector('#key-form button[type=submit]').click(), true")
    await page.wait_for("document.getElementById('route').options.length > 0"
                        " && !document.getElementById('run').disabled")


async def search_and_watch_the_rounds(page) -> None:
    """A seeded search started from the playground: rounds 1 and 2 are drawn before the answer arrives."""
    for field, value in (("route", GUIDED), ("prompt", PROMPT), ("w", PARAMS["w"]), ("k", PARAMS["k"]),
                         ("l", PARAMS["l"]), ("max-tokens", PARAMS["max_tokens"]), ("seed", PARAMS["seed"])):
        await page.evaluate(fill(field, value))
    await page.evaluate(RECORDER)
    await page.evaluate("document.getElementById('run').click(), true")
    await page.wait_for("!document.getElementById('answer').hidden", timeout=300, every=0.25)
    renders = await page.evaluate("window.renders")
    answered = next(r["t"] for r in renders if r.get("answer"))
    intermediate = {r["tree"] for r in renders if "tree" in r and not r["final"] and r["t"] < answered}
    assert {1, 2} <= intermediate, renders
    final = [r for r in renders if r.get("final")]
    assert len(final) == 1 and final[0]["tree"] == 3


async def the_tree_is_the_apis_trace(page, server: LiveServer) -> dict:
    """The final tree, node for node: the trace the server kept of this search, and the trace the
    OpenAI API returns for the same seeded request. -> the kept trace."""
    search_id = await page.evaluate("document.getElementById('answer').dataset.searchId")
    # Blocking clients run in a thread: the server answers on this test's own event loop.
    status, _, raw = await asyncio.to_thread(http, f"{server.base}/ui/api/searches/{search_id}",
                                             headers={"x-api-key": TEST_KEY})
    assert status == 200
    trace = json.loads(raw)
    drawn = await page.evaluate(NODES)
    same_nodes([dict(n) for n in drawn], trace)
    sdk = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    api = (await asyncio.to_thread(sdk.completions.create, model=GUIDED, prompt=PROMPT,
                                   extra_body={"w2s": {**PARAMS, "trace": True}})).model_extra["w2s"]
    assert api["params"] == trace["params"]
    same_nodes([dict(n) for n in drawn], api)
    answer = await page.evaluate("document.getElementById('answer-text').textContent")
    assert answer == trace["answers"][0]["text"] == api["answers"][0]["text"]
    assert sum(n["on_path"] for n in drawn) == 3
    return trace


async def hovering_shows_the_details(page, trace: dict) -> None:
    """The answer's last node: its whole text, its token counts, its round's upstream calls."""
    last = trace["answers"][0]["path"][-1]
    await page.hover(f"#tree g.node[data-round='2'][data-index='{last}']")
    await page.wait_for("!document.getElementById('tooltip').hidden")
    tip = await page.evaluate("document.getElementById('tooltip').innerText")
    assert "upstream calls" in tip and "tokens (this chunk / path)" in tip
    assert " ".join(trace["answers"][0]["text"].split()) in " ".join(tip.split())


async def write_traces(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A trace file, and a batch output file with a version 2 and a version 1 trace (scripted search)."""
    from w2s.proxy.api.job import Job
    from w2s.proxy.api.trace import trace_body
    from w2s.proxy.core.types import Prompt

    engine = scripted_engine(sampler=ScriptedSampler("up"))
    await engine.start()
    plan = engine.plan("fake-cbs", {"w": 2, "k": 2, "l": 1, "max_tokens": 3})
    prompt = Prompt.raw("A <b>bold</b> </script> prompt")  # markup in it must stay text
    trace = trace_body(await engine.run(plan, prompt), Job(plan, prompt, trace=True))
    await engine.aclose()
    single = tmp_path / "trace.json"
    single.write_text(json.dumps(trace))
    v1 = {k: v for k, v in trace.items() if k != "prompt"} | {"version": 1}
    v1["rounds"] = [{**rd, "candidates": [{k: c[k] for k in ("text", "parent", "score", "finished", "kept",
                                                              "finish_reason", "tokens")} for c in rd["candidates"]]}
                    for rd in trace["rounds"]]
    v1["answers"] = [{k: v for k, v in a.items() if k not in ("path", "candidate")} for a in trace["answers"]]
    batch = tmp_path / "out.jsonl"
    batch.write_text("\n".join(json.dumps({"id": f"b{i}", "custom_id": cid, "error": None,
                                           "response": {"status_code": 200, "body": {"w2s": t}}})
                               for i, (cid, t) in enumerate((("new", trace), ("old", v1)))) + "\n")
    return single, batch, trace


async def test_a_trace_file_opens_offline(browser, tmp_path):
    single, batch, trace = await write_traces(tmp_path)
    html = tmp_path / "view.html"
    done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "view", str(single), "-o", str(html), "--no-open"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "1 trace(s)" in done.stderr, done.stderr
    page = await browser.new_page()
    await page.goto(html.as_uri())
    await page.wait_for("document.querySelectorAll('#tree g.node').length > 0")
    same_nodes([dict(n) for n in await page.evaluate(NODES)], trace)
    assert await page.evaluate("document.querySelector('#summary pre').textContent") == trace["prompt"]["text"]
    assert await page.evaluate("document.querySelectorAll('#summary b').length") == 0
    assert await page.evaluate("getComputedStyle(document.getElementById('playground')).display") == "none"
    # The file picker: a batch output file with two traces, one of them version 1.
    await page.set_files("#file", batch)
    await page.wait_for("document.querySelectorAll('#file-list button').length === 2")
    await page.evaluate("document.querySelectorAll('#file-list button')[1].click(), true")
    await page.wait_for("document.querySelector('#summary pre').textContent.includes('no prompt')")
    same_nodes([dict(n) for n in await page.evaluate(NODES)], trace)  # version 1, upgraded: the same tree
    await page.screenshot(screenshot_dir(tmp_path) / "ui-offline.png")
    # Drag and drop: the single trace file, dropped on the tree.
    await page.drop(single)
    await page.wait_for("document.getElementById('status').textContent === 'Opened trace.json.'")
    assert await page.evaluate("document.querySelectorAll('#file-list button').length") == 1
    assert await page.evaluate("document.querySelector('#summary pre').textContent") == trace["prompt"]["text"]
    urls = [r["url"] for r in page.requests()]
    assert all(u.startswith("file://") for u in urls), urls  # the page itself, nothing else
    assert page.script_errors() == [] and page.browser_errors() == []


def test_view_refuses_a_file_without_a_trace(tmp_path):
    f = tmp_path / "plain.json"
    f.write_text(json.dumps({"choices": []}))
    done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "view", str(f), "--no-open"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("w2s: error:") and "no w2s search trace" in done.stderr


async def test_a_mixture_guides_parts_show_on_hover(browser, tmp_path):
    """A trace whose candidates carry a mixture's part scores: hovering a node lists each part's score and the
    weight the request set."""
    single, _, trace = await write_traces(tmp_path)
    trace["guide_weights"] = {"warm": 1.5, "plain": 0.5}
    for rd in trace["rounds"]:
        for c in rd["candidates"]:
            c["parts"] = {"warm": 1.25, "plain": -2.5}
    single.write_text(json.dumps(trace))
    html = tmp_path / "view.html"
    done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "view", str(single), "-o", str(html), "--no-open"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = await browser.new_page()
    await page.goto(html.as_uri())
    await page.wait_for("document.querySelectorAll('#tree g.node').length > 0")
    await page.hover("#tree g.node[data-round='0'][data-index='0']")
    await page.wait_for("!document.getElementById('tooltip').hidden")
    tip = " ".join((await page.evaluate("document.getElementById('tooltip').innerText")).split())
    assert "part warm (weight 1.5) +1.25" in tip and "part plain (weight 0.5) -2.50" in tip
    assert page.script_errors() == [] and page.browser_errors() == []


async def test_draws_cut_at_a_checkpoint_look_different(browser, tmp_path):
    """A scripted search with early rejection (reject_at): the draws cut at the checkpoint are nodes of their own
    kind on the page, saying where they were cut; the kept ones are not."""
    from w2s.proxy.api.job import Job
    from w2s.proxy.api.trace import trace_body
    from w2s.proxy.core.types import Prompt

    engine = scripted_engine(sampler=ScriptedSampler("up"))
    await engine.start()
    plan = engine.plan("fake-cbs", {"w": 2, "k": 2, "l": 3, "max_tokens": 6, "reject_at": 1})
    prompt = Prompt.raw("Once")
    trace = trace_body(await engine.run(plan, prompt), Job(plan, prompt, trace=True))
    await engine.aclose()
    cut = [(r, i) for r, rd in enumerate(trace["rounds"]) for i, c in enumerate(rd["candidates"]) if c["cut_at"]]
    assert len(cut) == 4 and all(trace["rounds"][r]["candidates"][i]["cut_at"] == 1 for r, i in cut)
    (tmp_path / "trace.json").write_text(json.dumps(trace))
    html = tmp_path / "view.html"
    done = subprocess.run([sys.executable, "-m", "w2s.proxy.cli", "view", str(tmp_path / "trace.json"), "-o",
                           str(html), "--no-open"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = await browser.new_page()
    await page.goto(html.as_uri())
    await page.wait_for("document.querySelectorAll('#tree g.node').length > 0")
    shown = await page.evaluate("[...document.querySelectorAll('#tree g.node.cut-at')].map(g => "
                                "[+g.dataset.round, +g.dataset.index, g.querySelector('.meta').textContent])")
    assert sorted((r, i) for r, i, _ in shown) == sorted(cut)
    assert all(meta.endswith("cut at token 1") for _, _, meta in shown)
    dash = await page.evaluate("getComputedStyle(document.querySelector('#tree g.node.cut-at rect')).strokeDasharray")
    kept = await page.evaluate("getComputedStyle(document.querySelector('#tree g.node.state-kept rect')).strokeDasharray")
    assert dash != kept
    await page.screenshot(screenshot_dir(tmp_path) / "ui-cut-at.png")
    assert page.script_errors() == [] and page.browser_errors() == []
