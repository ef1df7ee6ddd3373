"""The internvl family (InternVL3 / InternVL3.5): adapter (loaded model), processor (inputs), tiny-model
hooks, shipped configs."""

from adatp.families.internvl import tiny
from adatp.families.internvl.adapter import InternVLAdapter as Adapter
from adatp.families.internvl.processor import InternVLProcessor as Processor

__all__ = ["Adapter", "Processor", "tiny"]
