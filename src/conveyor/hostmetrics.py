"""What a host has and how busy it is: workers send it with every heartbeat, the server reports
its own in /monitor, both in the same keys and units. One home for both.

GPUs are read through NVML when it is there; on a host without an NVIDIA driver NVML fails to
load, and the host reports no GPUs instead of failing. A metric that cannot be read is left out.

Disk and network I/O come as cumulative byte counts (`disk_read_bytes`, `net_sent_bytes`, ...) and
as rates over the time since the previous sample (`disk_read_bytes_per_s`, ...); the first sample's
rates cover the time since the SystemMetrics was made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import psutil
import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no types

from conveyor.core.types import JSON

log = logging.getLogger(__name__)

_MB = 1024 * 1024


def default_resources() -> dict[str, float]:
    """What a worker advertises unless told otherwise: CPUs, RAM in MB, NVIDIA GPUs."""
    return {
        "cpu": float(os.cpu_count() or 1),
        "memory_mb": float(psutil.virtual_memory().total // _MB),
        "gpu": float(_gpu_count()),
    }


def advertised_resources(overrides: Mapping[str, float]) -> dict[str, float]:
    return {**default_resources(), **overrides}


class SystemMetrics:
    """Samples this host. CPU percentages cover the time since the previous sample."""

    def __init__(
        self, disk_path: str = ".", *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.disk_path = os.path.abspath(disk_path)
        self._nvml = _Nvml()
        self._clock = clock
        # The first CPU sample only sets the starting point; take it now so the first heartbeat
        # carries a real figure. The same goes for the I/O counters behind the rates.
        psutil.cpu_percent()
        psutil.cpu_percent(percpu=True)
        self._io_lock = threading.Lock()
        self._io_at = clock()
        self._io_before = _io_counters()

    def sample(self) -> dict[str, JSON]:
        """One reading; blocking (reads /proc and NVML), so servers call it in a worker thread."""
        out: dict[str, JSON] = {"host": socket.gethostname(), "pid": os.getpid()}
        try:
            memory = psutil.virtual_memory()
            out.update(
                cpu_percent=psutil.cpu_percent(),
                cpu_per_core_percent=list(psutil.cpu_percent(percpu=True)),
                cpu_count=os.cpu_count() or 1,
                load_avg=list(os.getloadavg()),
                memory_total_bytes=memory.total,
                memory_used_bytes=memory.total - memory.available,
                memory_percent=memory.percent,
            )
        except (OSError, psutil.Error) as exc:
            log.debug("cannot read CPU or memory", extra={"error": str(exc)})
        try:
            disk = psutil.disk_usage(self.disk_path)
            out.update(
                disk_path=self.disk_path,
                disk_total_bytes=disk.total,
                disk_used_bytes=disk.used,
                disk_percent=disk.percent,
            )
        except (OSError, psutil.Error) as exc:
            log.debug("cannot read disk usage", extra={"error": str(exc), "path": self.disk_path})
        out.update(self._io_rates())
        out["gpus"] = self._nvml.sample()
        return out

    def _io_rates(self) -> dict[str, JSON]:
        """Cumulative I/O byte counts, and their rates since the previous sample."""
        now_counters = _io_counters()
        with self._io_lock:
            now = self._clock()
            elapsed_s = now - self._io_at
            before, self._io_before, self._io_at = self._io_before, now_counters, now
        out: dict[str, JSON] = {}
        for key, value in now_counters.items():
            out[key] = value
            previous = before.get(key)
            if previous is not None and elapsed_s > 0:
                # A counter that went backwards (a disk or NIC went away) gives no rate, not < 0.
                out[f"{key}_per_s"] = round(max(0, value - previous) / elapsed_s, 1)
        return out

    def close(self) -> None:
        self._nvml.close()


class _Nvml:
    """NVML, initialised once; `available` is False when the library or driver is missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        try:
            pynvml.nvmlInit()
            self.available = True
        except pynvml.NVMLError as exc:
            log.debug("no NVML, reporting no GPUs", extra={"error": str(exc)})
            self.available = False

    def sample(self) -> list[JSON]:
        if not self.available:
            return []
        gpus: list[JSON] = []
        with self._lock:
            try:
                for index in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                    usage = pynvml.nvmlDeviceGetUtilizationRates(handle)
                    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                    name = pynvml.nvmlDeviceGetName(handle)
                    gpus.append(
                        {
                            "index": index,
                            "name": name.decode() if isinstance(name, bytes) else str(name),
                            "utilization_percent": float(usage.gpu),
                            "memory_utilization_percent": float(usage.memory),
                            "memory_total_bytes": int(memory.total),
                            "memory_used_bytes": int(memory.used),
                        }
                    )
            except pynvml.NVMLError as exc:
                # A GPU that fell off the bus must not stop the heartbeat that carries this.
                log.warning("reading GPU metrics failed", extra={"error": str(exc)})
        return gpus

    def close(self) -> None:
        with self._lock:
            if self.available:
                self.available = False
                with contextlib.suppress(pynvml.NVMLError):
                    pynvml.nvmlShutdown()


def _io_counters() -> dict[str, int]:
    """Bytes read and written by every disk, sent and received by every NIC, since boot."""
    out: dict[str, int] = {}
    try:
        disk = psutil.disk_io_counters()
        if disk is not None:  # None in some containers and VMs
            out.update(disk_read_bytes=disk.read_bytes, disk_write_bytes=disk.write_bytes)
    except (OSError, psutil.Error, RuntimeError) as exc:
        log.debug("cannot read disk I/O", extra={"error": str(exc)})
    try:
        net = psutil.net_io_counters()
        out.update(net_sent_bytes=net.bytes_sent, net_recv_bytes=net.bytes_recv)
    except (OSError, psutil.Error, RuntimeError) as exc:
        log.debug("cannot read network I/O", extra={"error": str(exc)})
    return out


def _gpu_count() -> int:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError:
        return 0
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
