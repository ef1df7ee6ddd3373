"""Former home of the qwen2_vl adapter, kept for imports: see :mod:`adatp.families.qwen2_vl`."""

from adatp.families.qwen2_vl.adapter import Qwen2VLAdapter

__all__ = ["Qwen2VLAdapter"]
