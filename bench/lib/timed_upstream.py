"""The latency bench's upstream: a loopback aiohttp server speaking OpenAI /v1/completions whose every call
waits a fixed latency, then returns n choices of random review-ish words with usage and finish_reason "length"
(or, with probability p_stop per choice, a shorter "stop"). bench/latency.py runs it in its own process.
"""
from __future__ import annotations

import asyncio
import random
import time

WORDS = ("the film a story was great dull good bad acting plot scene camera music long short "
         "and but with its quite very not really cast ending light dark slow funny sad moving "
         "lovely awful brilliant boring fine strong weak fresh tired sharp clever loud quiet").split()


def upstream_app(latency: float, p_stop: float):
    from aiohttp import web

    stats = {"calls": 0, "in_flight": 0, "max_in_flight": 0, "choices": 0}

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        stats["calls"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            await asyncio.sleep(latency)
        finally:
            stats["in_flight"] -= 1
        n = int(body.get("n") or 1)
        max_tokens = int(body.get("max_tokens") or 16)
        seed = body.get("seed")
        rng = random.Random(seed if seed is not None else random.random())
        choices, total = [], 0
        for i in range(n):
            k, finish = max_tokens, "length"
            if rng.random() < p_stop:
                k, finish = rng.randint(1, max_tokens), "stop"
            text = "".join(" " + rng.choice(WORDS) for _ in range(k))
            if finish == "stop":
                text += "."
            total += k
            choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
        stats["choices"] += n
        prompt_tokens = len(str(body.get("prompt", "")).split())
        return web.json_response({
            "id": f"cmpl-{stats['calls']}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model", "fake"), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                      "total_tokens": prompt_tokens + total},
        })

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(request: web.Request) -> web.Response:
        stats.update(calls=0, max_in_flight=0, choices=0)
        return web.json_response(stats)

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    return app


def serve_upstream(port: int, latency: float, p_stop: float) -> None:
    from aiohttp import web

    web.run_app(upstream_app(latency, p_stop), host="127.0.0.1", port=port, print=None, access_log=None)
