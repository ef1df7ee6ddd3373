"""How much memory decoding a video will take, checked against what this process may use, before
any frame is decoded (a user with no swap must get a one-line refusal, not a frozen machine)."""

from __future__ import annotations

import os
import resource

from adatp.errors import ConfigError

#: Bytes held per decoded pixel channel: the kept uint8 frames plus their stacked copy.
DECODE_COPIES = 2


def available_bytes() -> int | None:
    """Memory this process may still allocate: the smaller of the system's available memory
    (``MemAvailable``) and what its address-space limit (``ulimit -v`` / ``prlimit --as``) leaves;
    None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = 0
        try:
            with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
        except OSError:
            pass
        limits.append(max(soft - used, 0))
    return min(limits) if limits else None


def check_decode_memory(num_frames: int, height: int, width: int, what: str) -> None:
    """Refuse to decode ``num_frames`` frames of ``height x width`` when they cannot fit in memory.

    Raises:
        ConfigError: naming the frame count, the memory needed and available, and the fix.
    """
    need = num_frames * height * width * 3 * DECODE_COPIES
    free = available_bytes()
    if free is not None and need > free:
        fit = max(free // (height * width * 3 * DECODE_COPIES), 0)
        raise ConfigError(
            f"decoding {num_frames:,} frames of {width}x{height} from {what} needs about {need / 2**30:.1f} GiB, more "
            f"than the {free / 2**30:.1f} GiB this process can use: use {fit:,} frames or fewer"
        )
