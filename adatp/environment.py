"""What this installation runs on: versions for bug reports (``adatp env``) and for results files.

``TESTED`` lists the versions CI runs the whole test suite with; ``pyproject.toml``'s ranges are
the ones tested (the lower bound) up to the next release line not yet tried.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys

#: Versions CI runs the full test suite with (.ci/run). The suite also passed with torch 2.14.1, the
#: top of the torch range, on 2026-12-03.
TESTED = {"torch": "2.13.0", "transformers": "5.23.0", "av": "18.1.0", "numpy": "2.4.6"}

#: Packages reported by ``adatp env``: the core, then the extras.
PACKAGES = ("torch", "transformers", "av", "numpy", "pillow", "tokenizers", "safetensors", "typer", "rich",
            "accelerate", "matplotlib", "onnx", "gguf", "onnxruntime", "lmms_eval")


def package_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """adatp, Python, the platform and every package adatp may use (None: not installed)."""
    from adatp import __version__

    info: dict[str, str | None] = {
        "adatp": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    info.update({name: package_version(name) for name in PACKAGES})
    return info


def accelerator() -> str:
    """The devices torch sees, in words (``cpu only`` when there is no CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        return f"cpu only (torch built {'with' if torch.backends.cuda.is_built() else 'without'} CUDA)"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"CUDA {torch.version.cuda}: " + ", ".join(names)


def run_versions() -> dict[str, str | None]:
    """The versions that decide a result: adatp, torch and transformers (for results files)."""
    from adatp import __version__

    return {"adatp": __version__, "torch": package_version("torch"), "transformers": package_version("transformers")}
