"""Tiny random-weight Qwen-VL checkpoints that vLLM loads offline (the vLLM plug-in's tests).

:func:`adatp.models.tiny.build_tiny` already writes everything vLLM reads (weights, config,
tokenizer with the family's chat template, ``chat_template.json``, image and video processor
configs). vLLM's CPU attention kernels take head sizes of 32 and more, so the decoder here is
wider than adatp's default tiny one (head_dim 64 instead of 16); everything else is build_tiny's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Decoder sizes vLLM's CPU backend runs (head_dim 64); the vision tower keeps build_tiny's.
VLLM_TINY_SIZES: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-7b-instruct": dict(hidden=128, heads=2, kv_heads=1, intermediate=256, mrope_section=[8, 12, 12]),
    "qwen3-vl-8b-instruct": dict(hidden=128, heads=2, kv_heads=1, intermediate=256, head_dim=64,
                                 mrope_section=[12, 10, 10]),
}


def build_tiny_for_vllm(name: str, out_dir: str | os.PathLike[str], *, seed: int = 0, **overrides: Any) -> Path:
    """:func:`~adatp.models.tiny.build_tiny` of ``name`` with vLLM-compatible decoder sizes."""
    from adatp.errors import ConfigError
    from adatp.models.tiny import build_tiny

    if name not in VLLM_TINY_SIZES:
        raise ConfigError(f"no vLLM tiny sizes for {name!r}; valid: {sorted(VLLM_TINY_SIZES)}")
    return build_tiny(name, out_dir, seed=seed, **{**VLLM_TINY_SIZES[name], **overrides})
