"""Peak memory growth of a block of work: the CUDA allocator's peak on GPU, the process's peak
resident set on CPU (VmHWM, reset through ``/proc/self/clear_refs`` before the block; a 1 ms RSS
sampling thread where that reset is not allowed)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import torch


def _read_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory growth of a block: CUDA allocator on GPU, resident set on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.peak_bytes: int | None = None

    @contextlib.contextmanager
    def measure(self) -> Iterator[PeakMemory]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.method = "torch.cuda.max_memory_allocated growth over the allocated memory before the forward"
            yield self
            torch.cuda.synchronize()
            self.peak_bytes = int(torch.cuda.max_memory_allocated() - base)
            return
        base_kb = _read_status_kb("VmRSS")
        if base_kb is not None and _reset_hwm() and _read_status_kb("VmHWM") is not None:
            self.method = "CPU: growth of the process's peak RSS (VmHWM, reset via /proc/self/clear_refs) over the RSS before the forward"
            yield self
            self.peak_bytes = max(0, (_read_status_kb("VmHWM") or base_kb) - base_kb) * 1024
            return
        import psutil

        proc = psutil.Process()
        base = proc.memory_info().rss
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.001)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        self.method = "CPU: growth of the RSS sampled every 1 ms by a background thread (psutil) over the RSS before"
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], proc.memory_info().rss)
            self.peak_bytes = int(peak[0] - base)



def limit_malloc_caching() -> bool:
    """Make glibc hand large freed blocks back to the OS, so RSS peaks measure live tensors only."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 128 * 1024)) and bool(libc.mallopt(m_trim_threshold, 128 * 1024))
    except (OSError, AttributeError):
        return False
