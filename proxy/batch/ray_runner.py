"""`w2s batch --ray`: the items run on a Ray cluster; this process (the driver) writes the output.

    driver (proxy/batch/run.py)  reads the input, resumes from the output, writes every record
    RayRunner (this module)      N worker actors (proxy/batch/ray_worker.py), one Engine each;
                                 each item goes to the worker with the fewest in flight

Exactly once: a worker only returns an item's `Outcome`; the driver appends it
to the output (OutputFile: one fsync'd line) when the item's ObjectRef resolves,
and an ObjectRef resolves once, however often Ray re-ran the task behind it.
A worker that dies (SIGKILL, OOM, a lost node) is restarted by Ray, which then
re-runs the items it held (`task_retries` times each); an item whose worker died
more often than that becomes an error line (`worker_lost`), which --retry-failed
reruns. A driver that dies takes its actors with it (they belong to its Ray job);
the same command resumes from the output file, as without Ray.

Streaming: the driver holds the items and ships one to a worker when that worker
has a free slot (`--concurrency` per worker), so the cluster only ever holds the
items in flight, and each record is written the moment its item finishes.

Models load once per worker, from the model cache the driver warms first
(proxy/runtime/loading.py `warm_cache`): workers on the driver's machine only read
it; a worker on another node builds its own copy once, under the cache's lock.
"""
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

from w2s.proxy.api.results import new_id
from w2s.proxy.batch.input import BatchItem
from w2s.proxy.batch.output import Outcome
from w2s.proxy.core.config import Config
from w2s.proxy.core.errors import W2SError

# What a worker's environment takes from the driver's: where the warmed cache is and
# whether a hub may be asked. Never a secret: keys stay os.environ/NAME references,
# resolved from each worker's own environment.
FORWARDED_ENV = ("W2S_CACHE_DIR", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a cluster started on this machine, else a new local one
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) hold
    cpus_per_worker: float | None = None  # None: the worker's torch threads
    gpus_per_worker: float = 0.0
    task_retries: int = 2  # re-runs of an item whose worker died, before it becomes an error line

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise W2SError("--ray-workers must be >= 1")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise W2SError("--ray-cpus must be > 0")
        if self.gpus_per_worker < 0:
            raise W2SError("--ray-gpus must be >= 0")
        if self.task_retries < 0:
            raise W2SError("--ray-task-retries must be >= 0")


@dataclass
class WorkerState:
    handle: Any  # the actor
    info: dict[str, Any]  # what its start() said: pid, host, load seconds
    in_flight: int = 0
    items: int = 0  # outcomes it returned in this run

    @property
    def name(self) -> str:
        return f"pid {self.info['pid']} on {self.info['host']}"


class RayRunner:
    """Items -> outcomes on Ray worker actors. `slots`: how many items the driver keeps in flight."""

    def __init__(self, config: Config, opts: RayOptions, per_worker: int):
        self.config, self.opts, self.per_worker = config, opts, per_worker
        self.threads = config.torch_threads or max(1, int(opts.cpus_per_worker or 1))
        self.workers: list[WorkerState] = []
        self._ray: Any = None
        self._owns_ray = False

    @property
    def slots(self) -> int:
        return len(self.workers) * self.per_worker

    async def start(self) -> None:
        ray = self._ray = _import_ray()
        warm = _warm_cache(self.config)  # before any worker starts: they only read the cache
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            try:
                ray.init(address=self.opts.address, log_to_driver=False, runtime_env={"env_vars": env})
            except (ConnectionError, RuntimeError, ValueError, SystemExit) as e:
                # Ray gives up on an address where no cluster answers with SystemExit, after a minute.
                why = "no cluster answered" if isinstance(e, SystemExit) else _first_line(e)
                where = self.opts.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
                raise W2SError(f"cannot start or reach Ray at {where}: {why}") from None
            self._owns_ray = True
        n = self.opts.workers or self._default_workers(ray.cluster_resources())
        config = self.config.model_copy(update={"torch_threads": self.threads})
        from w2s.proxy.batch.ray_worker import BatchWorker

        actor = ray.remote(BatchWorker).options(
            num_cpus=self.opts.cpus_per_worker or self.threads, num_gpus=self.opts.gpus_per_worker,
            max_concurrency=self.per_worker, max_restarts=-1, max_task_retries=self.opts.task_retries)
        handles = [actor.remote(config) for _ in range(n)]
        _say(f"starting {n} Ray worker(s), {self.threads} torch thread(s) and {self.per_worker} item(s) "
             f"in flight each; model cache warm ({', '.join(warm) or 'no local models'})")
        try:
            infos = await asyncio.gather(*(h.start.remote() for h in handles))
        except Exception as e:
            raise W2SError(f"a Ray worker could not load the models: {_first_line(e)}") from None
        self.workers = [WorkerState(h, i) for h, i in zip(handles, infos)]
        _say(f"{n} Ray worker(s) ready: " + ", ".join(
            f"{w.name} (loaded in {w.info['load_seconds']:.1f} s, {w.info['rss_mb']:.0f} MB)" for w in self.workers))

    def _default_workers(self, resources: dict[str, float]) -> int:
        if self.opts.gpus_per_worker:
            return max(1, int(resources.get("GPU", 0) // self.opts.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // (self.opts.cpus_per_worker or self.threads)))

    async def execute(self, item: BatchItem) -> Outcome:
        w = min(self.workers, key=lambda s: s.in_flight)
        w.in_flight += 1
        ref = w.handle.run.remote(item)
        try:
            outcome = await ref
        except asyncio.CancelledError:
            try:
                self._ray.cancel(ref)  # the worker drops the search; the item is not written
            except Exception:  # noqa: BLE001 - the worker may be gone already; the item stays unwritten
                pass
            raise
        except self._ray.exceptions.RayError as e:
            lost = isinstance(e, (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError))
            return Outcome(new_id("req_"), None, None, "worker_lost" if lost else "worker_error",
                           f"{w.name}: {_first_line(e)}")
        finally:
            w.in_flight -= 1
        w.items += 1
        return outcome

    def items_per_worker(self) -> dict[str, int]:
        return {w.name: w.items for w in self.workers}

    async def aclose(self) -> None:
        ray, self._ray = self._ray, None
        if ray is None:
            return
        for w in self.workers:
            ray.kill(w.handle)
        if self._owns_ray:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise W2SError("--ray needs Ray: pip install 'w2s-proxy[ray]'") from None
    return ray


def _warm_cache(config: Config) -> list[str]:
    from w2s.proxy.runtime.loading import warm_cache

    return warm_cache(config)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[-1] if "Traceback" in text else text.splitlines()[0]


def _say(line: str) -> None:
    print(f"w2s batch: {line}", file=sys.stderr, flush=True)
