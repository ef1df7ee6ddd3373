"""Pruning methods, one file each. Importing this package registers the built-in ones.

Every module in this folder is imported here, so a new method is one new file with a
``@register_method`` class and nothing else to edit.
"""

import importlib
import pkgutil

from adatp.methods.adatp import AdaTP, AdaTPConfig
from adatp.methods.base import (
    PrefillContext,
    PruningMethod,
    Selection,
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
    "Selection",
    "StagePlan",
    "TargetConfig",
    "available_methods",
    "build_method",
    "register_method",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
