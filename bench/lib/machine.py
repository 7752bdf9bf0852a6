"""The machine a bench ran on, the time it ran, and torch's threads."""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def threads_arg(ap) -> None:
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (0 = torch's default). 1 by default: on a shared 2-core "
                         "machine 2 spin-waiting threads are several times slower")


def set_threads(n: int | None) -> int:
    """torch intra-op threads. On a shared 2-core box 1 thread is several times
    faster than 2 when another process is busy (spin-waiting workers)."""
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu", note: str = "") -> str:
    """One line: cores, CPU, torch and its threads, the GPU if one ran, the load average."""
    import torch

    parts = [f"{os.cpu_count()} cores ({cpu_name()})",
             f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)"]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.insert(0, torch.cuda.get_device_name(0))
    try:
        load = os.getloadavg()
        parts.append(f"load average at end {load[0]:.1f}")
    except OSError:
        pass
    if note:
        parts.append(note)
    return "; ".join(parts)


def today() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
