"""The llava_onevision family: adapter (loaded model), processor (inputs), tiny-model hooks, shipped configs."""

from adatp.families.llava_onevision.adapter import LlavaOnevisionAdapter as Adapter
from adatp.families.llava_onevision.processor import LlavaOnevisionProcessor as Processor
from adatp.families.llava_onevision.tiny import LlavaOnevisionTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
