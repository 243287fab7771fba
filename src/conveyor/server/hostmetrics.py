"""CPU, memory, disk and GPU of the server's host, for /monitor. Never raises: a metric that cannot
be read is left out."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
from typing import Any

import psutil

from conveyor.core.types import JSON

log = logging.getLogger(__name__)


def prime() -> None:
    """psutil's first CPU reading compares with nothing and says 0.0: take it at start-up."""
    psutil.cpu_percent(interval=None)


def snapshot(disk_path: str) -> dict[str, JSON]:
    """One reading; blocking (reads /proc and NVML), so call it in a worker thread."""
    out: dict[str, JSON] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        memory = psutil.virtual_memory()
        out.update(
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count() or 0,
            load_avg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.total - memory.available,
            memory_percent=memory.percent,
        )
    except (OSError, psutil.Error) as exc:
        log.debug("cannot read CPU or memory", extra={"error": str(exc)})
    try:
        disk = psutil.disk_usage(disk_path)
        out.update(
            disk_path=os.path.abspath(disk_path),
            disk_total_bytes=disk.total,
            disk_used_bytes=disk.used,
            disk_percent=disk.percent,
        )
    except (OSError, psutil.Error) as exc:
        log.debug("cannot read disk usage", extra={"error": str(exc), "path": disk_path})
    out["gpus"] = gpus()
    return out


def gpus() -> list[JSON]:
    """NVIDIA GPUs through NVML; an empty list where there is no GPU or no driver."""
    try:
        nvml: Any = importlib.import_module("pynvml")  # nvidia-ml-py; untyped
    except ImportError:
        return []
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return []
    found: list[JSON] = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(
                {
                    "index": index,
                    "name": str(nvml.nvmlDeviceGetName(handle)),
                    "utilization_percent": float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    "memory_total_bytes": int(memory.total),
                    "memory_used_bytes": int(memory.used),
                }
            )
    except nvml.NVMLError as exc:
        log.debug("cannot read GPUs", extra={"error": str(exc)})
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    return found
