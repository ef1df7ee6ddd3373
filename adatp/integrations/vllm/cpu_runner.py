"""vLLM 0.32's CPU runner never sets ``is_multimodal_pruning_enabled`` (the GPU runner does, in
``GPUModelRunner.load_model``): with video pruning on, the CPU runner then skips the M-RoPE
recompute and the pruned embeddings (with their position channels) no longer fit their slots
("shape mismatch: value tensor of shape [8, 132] cannot be broadcast ..."). EVS, VidCom2 and
adatp's methods all need it. :func:`set_pruning_flag_on_cpu` wraps ``CPUModelRunner.load_model`` to
set the flag exactly as the GPU runner computes it, and only when the runner left it unset.
"""

from __future__ import annotations

import functools


def set_pruning_flag_on_cpu() -> bool:
    """Patch the CPU runner once (a no-op off the CPU platform). Returns whether it is patched."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    original = CPUModelRunner.load_model
    if getattr(original, "_adatp_sets_pruning_flag", False):
        return True

    @functools.wraps(original)
    def load_model(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not getattr(self, "is_multimodal_pruning_enabled", False):
            from vllm.model_executor.models.interfaces import supports_multimodal_pruning

            mm_config = self.model_config.multimodal_config
            self.is_multimodal_pruning_enabled = (
                supports_multimodal_pruning(self.get_model())
                and mm_config is not None
                and mm_config.is_multimodal_pruning_enabled()
            )

    load_model._adatp_sets_pruning_flag = True
    CPUModelRunner.load_model = load_model
    return True
