"""The glm46v family (GLM-4.6V): GLM-4.1V's layout and hooks with GLM-4.6V's classes and timestamps;
shipped config GLM-4.6V-Flash."""

from adatp.families.glm46v.family import Glm46VAdapter as Adapter
from adatp.families.glm46v.family import Glm46VProcessor as Processor
from adatp.families.glm46v.family import Glm46VTiny as tiny

__all__ = ["Adapter", "Processor", "tiny"]
