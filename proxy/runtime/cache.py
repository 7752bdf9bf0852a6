"""The model cache: files built once, atomically, safe under concurrent first starts.

Every cached artifact (an assembled GGUF file, a converted model directory) is
built under a temporary name and renamed into place only when complete, so a
start killed mid-way leaves nothing a later start trusts. An exclusive lock
per artifact makes two processes starting together on an empty cache build it
once: the second waits, then finds it built.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process lock (the rename is still atomic)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("w2s.models")


def cache_dir() -> Path:
    root = os.environ.get("W2S_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "w2s-proxy")
    return Path(root)


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold `<target>.lock` exclusively: one builder of `target` at a time, across processes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def build_once(target: Path, build: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """`target`, built by `build(tmp)` unless `complete(target)` already says it is there."""
    if complete(target):
        return target
    with exclusive(target):
        if complete(target):
            return target  # another process built it while this one waited
        _remove_partials(target)  # left by a build that died: only the lock holder builds
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        log.info("building %s", target)
        try:
            build(tmp)
            _remove(target)  # not complete (checked above): a broken leftover, never trusted
            os.replace(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
    return target


def _remove_partials(target: Path) -> None:
    for p in target.parent.glob(f"{target.name}.tmp*"):
        log.info("removing %s, left by an interrupted build", p)
        _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()
