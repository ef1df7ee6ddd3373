"""adatp: attention-debiased token pruning (AdaTP) and its peers for video LLMs on transformers.

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path)
    frames = adatp.read_video("clip.mp4", num_frames=32)
    inputs = adatp.prepare_inputs(path, frames, "What happens after the dog jumps?")
    with adatp.prune(model, method="adatp", flops_ratio=0.273) as pruned:
        out = model.generate(**inputs, max_new_tokens=64)
        report = pruned.last_report
"""

from typing import TYPE_CHECKING

# Imported on first use, so that ``import adatp`` (and the command line's start-up, which Ctrl-C may
# interrupt) does not wait for torch and transformers.
_LAZY = {
    "PrunedModel": "adatp.api", "prune": "adatp.api", "prepare_inputs": "adatp.inputs",
    "AdaTPError": "adatp.errors", "ConfigError": "adatp.errors", "InputError": "adatp.errors",
    "UnsupportedModelError": "adatp.errors", "VideoError": "adatp.errors",
    "available_methods": "adatp.methods.base", "PruneReport": "adatp.runtime.report", "read_video": "adatp.video",
}

if TYPE_CHECKING:
    from adatp.api import PrunedModel, prune
    from adatp.errors import AdaTPError, ConfigError, InputError, UnsupportedModelError, VideoError
    from adatp.inputs import prepare_inputs
    from adatp.methods.base import available_methods
    from adatp.runtime.report import PruneReport
    from adatp.video import read_video


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adatp' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AdaTPError",
    "ConfigError",
    "InputError",
    "PruneReport",
    "PrunedModel",
    "UnsupportedModelError",
    "VideoError",
    "__version__",
    "available_methods",
    "prepare_inputs",
    "prune",
    "read_video",
]
