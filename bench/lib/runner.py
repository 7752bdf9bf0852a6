"""The one main loop of the benches that measure and report: parse, run, report, print and write."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lib.procs import w2s_cmd
from bench.lib.results import ROOT, write_result


def run_main(name: str, ap, run, report, argv: list[str] | None = None) -> None:
    """`run(args)` -> a tuple `report(*it, args, elapsed)` takes. Writes bench/results/<name>/<name>.md,
    <name>_quick.md with --quick, or --out."""
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = asyncio.run(run(args))
    text = report(*result, args, time.perf_counter() - t0)
    print(text)
    quick = "_quick" if getattr(args, "quick", False) else ""
    print(f"wrote {write_result(name, text, args.out, quick)}", file=sys.stderr)


async def until_loaded(client) -> None:
    """Wait for an app that loads its models in the background (503 until then); `client`: AsyncOpenAI."""
    import openai

    while True:
        try:
            await client.models.list()
            return
        except openai.APIStatusError:
            await asyncio.sleep(0.5)


def w2s_check(config: dict, upstream: str) -> tuple[int, str]:
    """Run `w2s check UPSTREAM` in a subprocess on `config` -> (exit status, what it printed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.json"  # JSON is YAML
        path.write_text(json.dumps(config))
        done = subprocess.run(w2s_cmd("--config", str(path), "check", upstream), cwd=ROOT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    return done.returncode, (done.stdout + done.stderr).strip()
