"""Former home of the qwen3_vl adapter, kept for imports: see :mod:`adatp.families.qwen3_vl`."""

from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter

__all__ = ["Qwen3VLAdapter"]
