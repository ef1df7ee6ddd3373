"""The glm4v family (GLM-4.1V): adapter (loaded model), processor (inputs), tiny-model hooks. GLM-4.6V
(``adatp/families/glm46v``) subclasses it."""

from adatp.families.glm4v.adapter import Glm4vAdapter as Adapter
from adatp.families.glm4v.processor import Glm4vProcessor as Processor
from adatp.families.glm4v.tiny import Glm4vTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
