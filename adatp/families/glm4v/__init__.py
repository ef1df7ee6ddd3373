"""The glm4v family (GLM-4.1V, GLM-4.6V: ``glm4v`` and ``glm46v``, one layout): adapter (loaded model),
processor (inputs), tiny-model hooks, shipped configs."""

from adatp.families.glm4v import tiny
from adatp.families.glm4v.adapter import Glm4vAdapter as Adapter
from adatp.families.glm4v.processor import Glm4vProcessor as Processor

__all__ = ["Adapter", "Processor", "tiny"]
