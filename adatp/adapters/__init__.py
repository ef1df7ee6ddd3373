"""Model-family adapters. Importing this package registers the built-in ones."""

from adatp.adapters.base import ModelAdapter, VideoLayout, VideoSpan, get_adapter, register_adapter
from adatp.adapters.llava_onevision import LlavaOnevisionAdapter

__all__ = ["LlavaOnevisionAdapter", "ModelAdapter", "VideoLayout", "VideoSpan", "get_adapter", "register_adapter"]
