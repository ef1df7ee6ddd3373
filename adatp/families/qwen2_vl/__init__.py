"""The qwen2_vl family: adapter (loaded model), processor (inputs), tiny-model hooks, shipped configs."""

from adatp.families.qwen2_vl.adapter import Qwen2VLAdapter as Adapter
from adatp.families.qwen2_vl.processor import Qwen2VLProcessor as Processor
from adatp.families.qwen2_vl.tiny import Qwen2VLTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
