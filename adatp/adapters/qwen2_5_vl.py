"""Former home of the qwen2_5_vl adapter, kept for imports: see :mod:`adatp.families.qwen2_5_vl`."""

from adatp.families.qwen2_5_vl.adapter import Qwen2_5_VLAdapter

__all__ = ["Qwen2_5_VLAdapter"]
