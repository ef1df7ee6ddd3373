"""GLM-4.6V (HF ``Glm46VForConditionalGeneration``): GLM-4.1V's adapter, processor and tiny hooks.

transformers 5.23 builds GLM-4.6V from GLM-4.1V's parts (the language model is ``Glm4vTextModel``,
the tower ``Glm4vVisionModel``); what differs for adatp is the class and the frame times in the prompt,
``{t:.1f} seconds`` instead of whole seconds (``Glm46VProcessor.replace_frame_token_id``).
"""

from __future__ import annotations

from adatp.families.glm4v.adapter import Glm4vAdapter
from adatp.families.glm4v.processor import Glm4vProcessor
from adatp.families.glm4v.tiny import Glm4vTiny


class Glm46VProcessor(Glm4vProcessor):
    @classmethod
    def frame_time(cls, seconds: float) -> str:
        return f"{seconds:.1f} seconds"


class Glm46VAdapter(Glm4vAdapter):
    model_classes = ("Glm46VForConditionalGeneration",)
    model_types = ("glm46v",)
    processor = Glm46VProcessor


class Glm46VTiny(Glm4vTiny):
    PROCESSOR_CLASSES = dict(video_processor_type="Glm46VVideoProcessor", processor_class="Glm46VProcessor")
