"""Tiny LLaVA-OneVision models: built by :mod:`adatp.models.tiny` itself (``build_tiny_llava_onevision``,
the base of the built-in adatp-tiny); these hooks hand the shipped-architecture entry points to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LlavaOnevisionTiny:
    @staticmethod
    def model(name: str, seed: int = 0, **overrides: Any) -> Any:
        """The random-weight tiny model of architecture ``name`` in memory."""
        from adatp.models.tiny import tiny_llava_onevision_model

        return tiny_llava_onevision_model(seed=seed, arch=name, **overrides)

    @staticmethod
    def build(name: str, out_dir: Any, seed: int = 0, **overrides: Any) -> Path:
        """A loadable tiny directory of architecture ``name``."""
        from adatp.models.tiny import build_tiny_llava_onevision

        return build_tiny_llava_onevision(out_dir, seed=seed, arch=name, **overrides)
