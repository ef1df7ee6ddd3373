"""Pruning methods, one file each. Importing this package registers the built-in ones."""

from adatp.methods.adatp import AdaTP, AdaTPConfig
from adatp.methods.base import (
    PrefillContext,
    PruningMethod,
    StagePlan,
    TargetConfig,
    available_methods,
    build_method,
    register_method,
)
from adatp.methods.none import NoPruning

__all__ = [
    "AdaTP",
    "AdaTPConfig",
    "NoPruning",
    "PrefillContext",
    "PruningMethod",
    "StagePlan",
    "TargetConfig",
    "available_methods",
    "build_method",
    "register_method",
]
