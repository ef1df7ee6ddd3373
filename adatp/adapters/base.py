"""Former home of the adapter base, kept for ``adatp.adapters.base`` imports: see :mod:`adatp.families.base`."""

from adatp.families.base import ModelAdapter, VideoLayout, VideoSpan, qwen_query_key_states, rope_rotate
from adatp.families.registry import adapter_class_for, get_adapter, register_adapter, supported_model_types

__all__ = [
    "ModelAdapter",
    "VideoLayout",
    "VideoSpan",
    "adapter_class_for",
    "get_adapter",
    "qwen_query_key_states",
    "register_adapter",
    "rope_rotate",
    "supported_model_types",
]
