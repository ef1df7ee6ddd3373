"""adatp: attention-debiased token pruning (AdaTP) and its peers for video LLMs on transformers.

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path)
    frames = adatp.read_video("clip.mp4", num_frames=32)
    inputs = adatp.prepare_inputs(path, frames, "What happens after the dog jumps?")
    with adatp.prune(model, method="adatp", flops_ratio=0.273) as pruned:
        out = model.generate(**inputs, max_new_tokens=64)
        report = pruned.last_report
"""

from adatp.errors import AdaTPError, ConfigError, InputError, UnsupportedModelError, VideoError

# The Hugging Face runtime (and transformers with it) loads on first use: code that needs only the
# methods and ops (the vLLM plug-in, in an environment with another transformers) never imports it.
_LAZY = {
    "PrunedModel": "adatp.api",
    "prune": "adatp.api",
    "prepare_inputs": "adatp.inputs",
    "available_methods": "adatp.methods.base",
    "PruneReport": "adatp.runtime.report",
    "read_video": "adatp.video",
}


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
