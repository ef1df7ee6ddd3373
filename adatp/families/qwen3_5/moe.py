"""The qwen3_5_moe family (Qwen3.5-MoE): Qwen3.5 with a sparse MoE block in every decoder layer; its
classes live beside the dense ones (``adapter.py``, ``tiny.py``) and its config in ``configs/``."""

from adatp.families.qwen3_5.adapter import Qwen3_5MoeAdapter as Adapter
from adatp.families.qwen3_5.processor import Qwen3_5Processor as Processor
from adatp.families.qwen3_5.tiny import Qwen3_5MoeTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
