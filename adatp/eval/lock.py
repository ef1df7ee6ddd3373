"""One writer per results file: an OS file lock beside it, held while a run reads and appends.

A second ``adatp eval`` on the same results (the same ``--out``, model, task and run) is refused
at once with one line, before it reads anything: two writers would append every item twice. The
lock is ``fcntl.flock`` on ``.<file>.lock`` beside the results file, which the operating system
releases when the process ends, however it ends (a killed run leaves no stale lock). Under
``torchrun`` / ``accelerate launch`` process 0 locks the run's file and every process its own
shard. Where ``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adatp.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    """The lock file of a results file: ``.<name>.lock`` in the same folder."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def exclusive_writer(path: Path) -> Iterator[None]:
    """Hold the lock of results file ``path`` for the ``with`` block.

    Raises:
        ConfigError: another process holds it (naming the file and what to do).
    """
    if fcntl is None:
        yield
        return
    lock = lock_path(Path(path))
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another adatp process is writing {str(path)!r} (it holds {lock.name}): wait until it ends, "
                "or pass another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
