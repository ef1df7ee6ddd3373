"""The qwen3_vl family: adapter (loaded model), processor (inputs), tiny-model hooks, shipped configs."""

from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter as Adapter
from adatp.families.qwen3_vl.processor import Qwen3VLProcessor as Processor
from adatp.families.qwen3_vl.tiny import Qwen3VLTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
