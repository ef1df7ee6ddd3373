"""Results files: one JSONL per run, a header line first, one row per item, never silently lost.

The first line is a header: ``{"adatp_results": 1, "model": {...identity...}, "run": {...},
"identity": {...}, "versions": {...}}``. Every following line is one item's result. Appends are flushed and fsynced,
so a killed run loses at most the line being written:

- a torn *last* line (no newline at the end of the file) is the only thing ever removed;
- a corrupt or malformed line anywhere else is reported with its file and line number, skipped
  (its item is evaluated again), and left in the file;
- a file written for another run refuses to be resumed, saying what differs (the header's
  ``identity``: the model's full content, method, options, target, frames, dtype, device kind;
  :func:`open_results`), unless ``restart`` sets it aside; each row carries its item's key, checked
  by :func:`adatp.eval.harness.run_items`.
Files written before headers existed (legacy) are read as they are, with a warning that the
model could not be checked.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adatp.errors import ConfigError

HEADER_KEY = "adatp_results"
FORMAT_VERSION = 1
#: Keys (and their types) every result row must have.
REQUIRED = {"item_id": str, "predicted": int, "correct": bool}


class ResultsWarning(UserWarning):
    """Something in a results file was skipped or could not be checked (file and line named)."""


def _problem(row: Any, required: dict[str, type]) -> str | None:
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    for key, kind in required.items():
        if key not in row:
            return f"no {key!r}"
        value = row[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key!r} is {value!r}, not an integer"
        if kind is not int and not isinstance(value, kind):
            return f"{key!r} is {value!r}, not a {kind.__name__}"
    return None


def read_results_file(path: Path, required: dict[str, type] = REQUIRED) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header or None, the valid rows in file order) of a results file.

    A torn last line is cut from the file so that appends start on a clean line; every other bad
    line is reported as a :class:`ResultsWarning` naming the file and line number, and skipped.
    """
    path = Path(path)
    if not path.is_file():
        return None, []
    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            warnings.warn(ResultsWarning(f"{path}:{number}: not JSON ({exc}); line skipped, its item will be redone"),
                          stacklevel=2)
            continue
        if number == 1 and isinstance(row, dict) and HEADER_KEY in row:
            header = row
            continue
        problem = _problem(row, required)
        if problem is not None:
            warnings.warn(ResultsWarning(f"{path}:{number}: malformed result row ({problem}); line skipped, "
                                         "its item will be redone"), stacklevel=2)
            continue
        rows.append(row)
    if torn:
        warnings.warn(ResultsWarning(f"{path}:{len(lines) + 1}: torn last line (a killed run) removed; "
                                     "its item will be redone"), stacklevel=2)
        with open(path, "r+b") as f:
            f.truncate(len(data) - len(torn))
    return header, rows


def read_results(path: Path) -> list[dict[str, Any]]:
    """The valid result rows of a results file (see :func:`read_results_file`)."""
    return read_results_file(path)[1]


def _write_lines(path: Path, rows: Iterable[dict[str, Any]], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.flush()
        os.fsync(f.fileno())


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and fsync it before returning."""
    _write_lines(path, [row], "a")


def replace_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as the whole of ``path`` atomically: a fsynced temporary sibling, renamed
    onto it, so a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.partial")
    _write_lines(tmp, rows, "w")
    os.replace(tmp, path)


def model_record(model_dir: Path) -> dict[str, str]:
    """The model as a results file names it: its directory, identity (sampled, :func:`model_identity`;
    older files name the model by it), config hash, and ``content``: SHA-256 of every byte of the
    checkpoint (:func:`~adatp.models.identity.model_fingerprint`, cached by file stat)."""
    from adatp.models.identity import config_hash, model_fingerprint, model_identity

    return {"dir": str(model_dir), "identity": model_identity(model_dir), "config_sha256": config_hash(model_dir),
            "content": model_fingerprint(model_dir)}


def make_header(model: dict[str, str], run: dict[str, Any], identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The header of a results file: the model (:func:`model_record`), the run's configuration
    (method, options, data), the run's ``identity`` (what a resumed row must match, compared by
    :func:`open_results`) and the adatp / torch / transformers versions."""
    from adatp.environment import run_versions

    header = {HEADER_KEY: FORMAT_VERSION, "model": model, "run": run, "versions": run_versions()}
    if identity is not None:
        header["identity"] = identity
    return header


class RunMismatch(ConfigError):
    """A results file (or a row in it) is of another run: another model, frames, method options,
    item content, ...; it is never reused silently (``--restart`` sets the file aside)."""


#: The flag that starts a run afresh when its results file is of another run (named in errors).
RESTART_FLAG = "--restart"


def open_results(path: Path, header: dict[str, Any], required: dict[str, type] = REQUIRED,
                 create: bool = True, restart: bool = False) -> list[dict[str, Any]]:
    """Rows already in ``path`` after checking they come from the same run (with ``create``,
    writes the header of a new file).

    The same run: the header's ``identity`` (everything that decides a row: the model's full
    content, method, options and seeds, target, frames, dtype, device class; see
    :func:`adatp.eval.harness.run_identity`) is equal. Files written before headers carried it are
    checked by model only, with a warning. With ``restart`` a file of another run is renamed
    aside (:func:`set_aside`, with a warning) and the run starts afresh.

    Raises:
        RunMismatch: the file is of another run (one line saying what differs, and the flag).
    """
    old, rows = read_results_file(path, required)
    if old is not None:
        differs = run_differences(old, header)
        if differs and not restart:
            raise RunMismatch(f"{path} holds results of {'; '.join(differs)}: pass {RESTART_FLAG} to set that file "
                              "aside and start afresh, or another --out")
        if differs:
            set_aside(path)
            old, rows = None, []
        elif "identity" not in old and "identity" in header:
            warnings.warn(ResultsWarning(
                f"{path}: written before results files recorded the whole run (frames, options, item contents); "
                f"resuming it after checking the model only (pass {RESTART_FLAG} to start afresh)"), stacklevel=2)
    if old is None:
        if rows:
            warnings.warn(ResultsWarning(f"{path}: written before results files recorded their model; resuming it "
                                         "without checking that the model is the same"), stacklevel=2)
        elif create and (not path.is_file() or path.stat().st_size == 0):
            append_line(path, header)
    return rows


def run_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two results headers, as phrases (empty: the same run).

    Headers with an ``identity`` compare it key by key; older ones compare the model's identity
    (under every fingerprint scheme)."""
    was, now = old.get("model", {}), new["model"]
    model = (f"model {was.get('dir')!r} (identity {was.get('identity')}), not of {now['dir']!r} "
             f"(identity {now['identity']})")
    if "identity" not in old or "identity" not in new:
        same = was.get("identity") == now["identity"] or _older_identity_of(was.get("identity"), now["dir"])
        return [] if same else [model]
    a, b = old["identity"], new["identity"]
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (k != "model_content", k)):
        if a.get(key) != b.get(key):
            if key == "model_content":
                out.append(f"model {was.get('dir')!r} (content {str(a.get(key))[:16]}), not of {now['dir']!r} "
                           f"(content {str(b.get(key))[:16]})")
            else:
                out.append(f"{key} {_short(a.get(key))}, not {_short(b.get(key))}")
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def set_aside(path: Path) -> Path:
    """Rename a results file of another run to ``<name>.replaced-<UTC time>.jsonl`` beside it
    (nothing is deleted), with a warning naming both; returns the new name."""
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    target = path.with_name(f"{stem}.replaced-{stamp}.jsonl")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}.replaced-{stamp}-{n}.jsonl")
    os.replace(path, target)
    warnings.warn(ResultsWarning(f"{path}: of another run; set aside as {target.name}, starting afresh"), stacklevel=3)
    return target


def _older_identity_of(identity: str | None, model_dir: str) -> bool:
    """Whether ``identity`` is this model's under an older fingerprint scheme (the same weights)."""
    from adatp.models.identity import older_identities

    try:  # the current scheme's identity is already known to differ: hash only the older ones
        return identity in older_identities(model_dir)
    except (ConfigError, OSError):
        return False


def unique_by_id(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by item id; a later row for the same id replaces an earlier one."""
    return {row["item_id"]: row for row in rows}
