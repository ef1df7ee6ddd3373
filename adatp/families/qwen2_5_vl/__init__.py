"""The qwen2_5_vl family: adapter (loaded model), processor (inputs), tiny-model hooks, shipped configs."""

from adatp.families.qwen2_5_vl.adapter import Qwen2_5_VLAdapter as Adapter
from adatp.families.qwen2_5_vl.processor import Qwen2_5_VLProcessor as Processor
from adatp.families.qwen2_5_vl.tiny import Qwen2_5_VLTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
