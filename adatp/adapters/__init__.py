"""Former home of the family adapters, kept so that ``adatp.adapters`` imports keep working: the
families now live in ``adatp/families/<name>/`` (see :mod:`adatp.families`)."""

from adatp.families.base import ModelAdapter, VideoLayout, VideoSpan
from adatp.families.llava_onevision.adapter import LlavaOnevisionAdapter
from adatp.families.qwen2_5_vl.adapter import Qwen2_5_VLAdapter
from adatp.families.qwen2_vl.adapter import Qwen2VLAdapter
from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter
from adatp.families.registry import get_adapter

__all__ = [
    "LlavaOnevisionAdapter",
    "ModelAdapter",
    "Qwen2VLAdapter",
    "Qwen2_5_VLAdapter",
    "Qwen3VLAdapter",
    "VideoLayout",
    "VideoSpan",
    "get_adapter",
]
