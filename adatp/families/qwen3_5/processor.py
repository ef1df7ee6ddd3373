"""Qwen3.5 / Qwen3.5-MoE inputs: transformers 5.23 builds them with Qwen3-VL's processor
(``Qwen3VLProcessor`` and ``Qwen3VLVideoProcessor``: timestamps between the token grids, mean/std
0.5, 16 px patches, ``smart_resize`` over the whole video), so every hook is Qwen3-VL's."""

from __future__ import annotations

from adatp.families.qwen3_vl.processor import Qwen3VLProcessor


class Qwen3_5Processor(Qwen3VLProcessor):
    """Qwen3-VL's processor unchanged; its own class so that a later Qwen3.5 change has one place."""
