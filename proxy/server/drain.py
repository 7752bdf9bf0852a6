"""Leaving a load balancer's pool without losing a request: SIGTERM drains, then the server stops.

`serve` (proxy/server/app.py) runs `drain` on the first SIGTERM or SIGINT:

1. /ready answers 503 `{"status": "draining"}`, so the balancer's health check takes this
   replica out of rotation (new requests go elsewhere).
2. Every request that has not started a search, whether queued for a slot or arriving while the
   health check catches up, gets a 503 `draining` with `x-should-retry: true` and
   `Retry-After: 1`. Nothing was computed for it, so re-sending it is safe: HAProxy's
   `retry-on 503` with `option redispatch` (deploy/haproxy.cfg) sends it to another replica,
   and a client talking to this server directly retries.
3. Searches already running finish and their answers are sent, for up to
   `server.drain_seconds`; then the listener closes and the process exits. A search still
   running then is cancelled (its client sees the connection close): the deadline is what an
   orchestrator's own grace period allows before its SIGKILL.

A second signal during the drain stops at once.
"""
from __future__ import annotations

import asyncio
import logging

from w2s.proxy.core.errors import Draining
from w2s.proxy.server.service import DRAINING, Service

log = logging.getLogger("w2s.server")


async def drain(svc: Service, seconds: float) -> bool:
    """Stop taking searches, refuse the queued ones, wait for the running ones.
    -> True when every running search finished within `seconds`."""
    svc.draining = True
    refused = svc.admission.reject_waiting(lambda: Draining(DRAINING))
    running = svc.admission.running
    log.warning("draining: %d search(es) running, %d queued refused with 503; waiting up to %g s",
                running, refused, seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while svc.admission.running and loop.time() < deadline:
        await asyncio.sleep(0.05)
    left = svc.admission.running
    if left:
        log.warning("drain deadline (server.drain_seconds=%g) passed with %d search(es) running: "
                    "they are cancelled", seconds, left)
    else:
        log.warning("drained in %.1f s: every running search finished", loop.time() - deadline + seconds)
    return left == 0
