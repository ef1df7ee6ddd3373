"""Model-family adapters. Importing this package registers the built-in ones."""

from adatp.adapters.base import ModelAdapter, VideoLayout, VideoSpan, get_adapter, register_adapter
from adatp.adapters.llava_onevision import LlavaOnevisionAdapter
from adatp.adapters.qwen2_5_vl import Qwen2_5_VLAdapter
from adatp.adapters.qwen2_vl import Qwen2VLAdapter
from adatp.adapters.qwen3_5 import Qwen3_5Adapter, Qwen3_5MoeAdapter
from adatp.adapters.qwen3_vl import Qwen3VLAdapter

__all__ = [
    "LlavaOnevisionAdapter",
    "ModelAdapter",
    "Qwen2VLAdapter",
    "Qwen2_5_VLAdapter",
    "Qwen3VLAdapter",
    "Qwen3_5Adapter",
    "Qwen3_5MoeAdapter",
    "VideoLayout",
    "VideoSpan",
    "get_adapter",
    "register_adapter",
]
