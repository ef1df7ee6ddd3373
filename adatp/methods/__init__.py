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
from adatp.methods.fastv import FastV, FastVConfig
from adatp.methods.none import NoPruning
from adatp.methods.random import RandomConfig, RandomPruning

__all__ = [
    "AdaTP",
    "AdaTPConfig",
    "FastV",
    "FastVConfig",
    "NoPruning",
    "PrefillContext",
    "PruningMethod",
    "RandomConfig",
    "RandomPruning",
    "StagePlan",
    "TargetConfig",
    "available_methods",
    "build_method",
    "register_method",
]
