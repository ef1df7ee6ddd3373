"""The qwen3_5 family (Qwen3.5, dense and MoE): Qwen3-VL's adapter, processor and tiny hooks with a
hybrid Gated DeltaNet / full-attention decoder; shipped configs Qwen3.5-27B and Qwen3.5-35B-A3B."""

from adatp.families.qwen3_5.adapter import Qwen3_5Adapter as Adapter
from adatp.families.qwen3_5.processor import Qwen3_5Processor as Processor
from adatp.families.qwen3_5.tiny import Qwen3_5Tiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
