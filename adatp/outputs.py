"""Where a command writes: checked before any work starts, so a bad path is one line, not a lost run.

Every check names the option, the path and the fix, and raises :class:`adatp.errors.ConfigError`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from adatp.errors import ConfigError


def _can_write_in(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def check_output_dir(path: Path, option: str) -> Path:
    """``path`` as a folder adatp may write in (created when missing).

    Raises:
        ConfigError: it is a file, or it cannot be created or written in.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a file, not a folder: pass a folder")
    why = _can_write_in(path)
    if why is not None:
        raise ConfigError(f"cannot write in {option} {str(path)!r} ({why}): choose a writable folder")
    return path


def check_output_file(path: Path, option: str, suffixes: Iterable[str] = ()) -> Path:
    """``path`` as a file adatp may (over)write, with one of ``suffixes`` when given.

    Raises:
        ConfigError: a folder, a suffix not among ``suffixes``, or a place that cannot be written.
    """
    path = Path(path).expanduser()
    suffixes = tuple(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {str(path)!r}: the file name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a folder: pass a file name")
    why = _can_write_in(path.parent)
    if why is None and path.exists() and not os.access(path, os.W_OK):
        why = "the file is read-only"
    if why is not None:
        raise ConfigError(f"cannot write {option} {str(path)!r} ({why}): choose a writable place")
    return path


def os_error_line(exc: OSError) -> str:
    """An operating-system error as one line naming the path (for the command line's last resort)."""
    what = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(repr(n) for n in names)
    return f"{what}: {where}" if where else what
