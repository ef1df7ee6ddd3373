"""A model directory's identity: which weights a result came from.

Two fingerprints: :func:`model_fingerprint` hashes every byte of every file (cached per file by
its stat), and is what a results file's run identity compares; :func:`model_identity`, below, reads
samples only and names the model in results headers (older files are checked by it).

Results are resumed by item id, so a results file must not be continued by another model that
happens to live in a directory of the same name (or by a retrained one in the same directory).
Hashing a 15 GB checkpoint on every run is too slow; instead the identity hashes

- ``config.json`` (bytes),
- every weight file's name and size, its safetensors header (names, dtypes, shapes, offsets),
- its whole content when it is at most 64 MiB, else 256 blocks of 4 KiB read at evenly spaced
  offsets (1 MiB of a 15 GB checkpoint),
- the built-in model's build marker when present (it names the trained weights' SHA-256).

Two different trainings of one architecture differ in the sampled blocks (every tensor changes);
copying or moving a checkpoint keeps its identity (no paths or times are hashed).

Scheme 1 (adatp before 2026-12-03 11:00 UTC) also hashed a small safetensors file's header before
its whole content; :func:`model_identities` still computes it, so results written then resume.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path

from adatp.errors import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MARKERS = ("adatp_organism.json", "adatp_tiny.json")
WHOLE_FILE_BYTES = 64 << 20
SAMPLE_BLOCKS = 256
BLOCK_BYTES = 4096
OLDER_SCHEMES = (1,)  # model_identity's default scheme is 2


def _safetensors_header(f, size: int) -> bytes:
    """The JSON header of a safetensors file (empty when the file is not one)."""
    if size < 8:
        return b""
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length) if 8 + length <= size else b""


def _hash_weight_file(digest: "hashlib._Hash", path: Path, scheme: int = 2) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as f:
        if path.suffix == ".safetensors" and (scheme == 1 or size > WHOLE_FILE_BYTES):
            digest.update(_safetensors_header(f, size))
            f.seek(0)
        if size <= WHOLE_FILE_BYTES:  # every byte, the header included
            digest.update(f.read())
            return
        step = max(size // SAMPLE_BLOCKS, 1)
        for offset in range(0, size, step)[:SAMPLE_BLOCKS]:
            f.seek(offset)
            digest.update(f.read(BLOCK_BYTES))


def model_identity(model_dir: str | os.PathLike[str], scheme: int = 2) -> str:
    """A 16-hex-digit fingerprint of the checkpoint in ``model_dir`` (see the module docstring).

    Raises:
        ConfigError: no ``config.json`` in ``model_dir``.
    """
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    if not config.is_file():
        raise ConfigError(f"{str(model_dir)!r} has no config.json: pass a local checkpoint directory")
    digest = hashlib.sha256(config.read_bytes())
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            _hash_weight_file(digest, path, scheme)
        elif path.name in MARKERS:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def older_identities(model_dir: str | os.PathLike[str]) -> list[str]:
    """The identity of ``model_dir`` under each older scheme (results written then name it so)."""
    return [model_identity(model_dir, scheme) for scheme in OLDER_SCHEMES]


def model_identities(model_dir: str | os.PathLike[str]) -> list[str]:
    """The identity of ``model_dir`` under every scheme, current first."""
    return [model_identity(model_dir), *older_identities(model_dir)]


def config_hash(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 (16 hex digits) of ``config.json``'s bytes."""
    return hashlib.sha256((Path(model_dir) / "config.json").read_bytes()).hexdigest()[:16]


# --- the full-content fingerprint (every byte) ------------------------------------------------

HASH_CHUNK = 8 << 20
RACY_SECONDS = 2.0


def _file_sha256(path: Path, cache: Path | None) -> str:
    """SHA-256 of every byte of ``path``, cached under ``cache`` by the file's (path, size, mtime in
    ns, inode, device): a changed file gets a new key, so a stale digest is never read back."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}".encode())
    entry = cache / f"{key.hexdigest()[:40]}.sha256" if cache is not None else None
    if entry is not None:
        try:
            digest = entry.read_text(encoding="ascii").strip()
            if len(digest) == 64:
                return digest
        except OSError:
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_CHUNK):
            digest.update(block)
    value = digest.hexdigest()
    # A file modified in the last seconds may change again within the file system's timestamp
    # granularity without its stat changing: its digest is not cached (git's "racily clean" rule).
    if entry is not None and time.time() - st.st_mtime > RACY_SECONDS:
        try:  # a read-only cache only costs the next run the hashing again
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
            tmp.write_text(value, encoding="ascii")
            os.replace(tmp, entry)
        except OSError:
            pass
    return value


def default_hash_cache() -> Path:
    """Where file digests are cached: ``<adatp cache>/file-sha256`` (``$ADATP_CACHE`` or ~/.cache/adatp)."""
    from adatp.models.tiny import default_cache_dir

    return default_cache_dir() / "file-sha256"


def model_fingerprint(model_dir: str | os.PathLike[str], cache: Path | None | bool = True) -> str:
    """SHA-256 (hex) of a checkpoint's whole content: every file under ``model_dir`` (names starting
    with ``.`` left out), by relative path and every byte: weights, config, tokenizer, chat
    template, preprocessing settings, relevance scorer.

    Unlike :func:`model_identity` nothing is sampled, so a change of any byte (a projector-only
    fine-tune) changes it. Each file's digest is cached by (path, size, mtime, inode)
    (``cache``: a folder, True for :func:`default_hash_cache`, False/None for none), so a 15 GB
    checkpoint is read once, not at every run. Moving or copying a checkpoint keeps the
    fingerprint (it is hashed again, once, at its new place).

    Raises:
        ConfigError: no ``config.json`` in ``model_dir``.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{str(model_dir)!r} has no config.json: pass a local checkpoint directory")
    folder = default_hash_cache() if cache is True else (cache or None)
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(model_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(f"{relative.as_posix()}\0{_file_sha256(path, folder)}\0".encode())
    return digest.hexdigest()
