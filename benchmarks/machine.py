"""The one-line description of the machine every benchmark prints first (numbers mean little without it)."""

from __future__ import annotations

import datetime
import os
import platform

import torch


def machine(device: torch.device | None = None) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [f"CPU: {cpu} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"]
    if device is not None and device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    import torchvision

    parts.append(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    parts.append(f"date {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    parts.append(f"load avg (1 min) {os.getloadavg()[0]:.2f}")
    return " | ".join(parts)
