"""Former home of the llava_onevision adapter, kept for imports: see :mod:`adatp.families.llava_onevision`."""

from adatp.families.llava_onevision.adapter import LlavaOnevisionAdapter

__all__ = ["LlavaOnevisionAdapter"]
