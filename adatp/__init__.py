"""adatp: attention-debiased token pruning (AdaTP) and its peers for video LLMs on transformers.

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path)
    frames = adatp.read_video("clip.mp4", num_frames=32)
    inputs = adatp.prepare_inputs(path, frames, "What happens after the dog jumps?")
    with adatp.prune(model, method="adatp", flops_ratio=0.273) as pruned:
        out = model.generate(**inputs, max_new_tokens=64)
        report = pruned.last_report
"""

from adatp.api import PrunedModel, prune
from adatp.inputs import prepare_inputs
from adatp.errors import AdaTPError, ConfigError, InputError, UnsupportedModelError, VideoError
from adatp.methods.base import available_methods
from adatp.runtime.report import PruneReport
from adatp.video import read_video

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
