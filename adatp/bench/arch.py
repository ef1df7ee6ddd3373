"""Real-size models of the shipped architectures without their weights: every parameter is created
on the meta device, then given cheap deterministic values. Speed and memory can be measured on a 7B
architecture in seconds of setup; accuracy means nothing on such a model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every parameter on the meta device (buffers stay real: rotary tables are computed)."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def materialize(module: nn.Module, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """Give meta parameters real storage with a cheap deterministic init (tied weights stay tied).

    Matrices get a seeded N(0, 0.02^2) block of about a million values repeated over the whole
    tensor (memory-bound: seconds for 7B instead of minutes of random init); norm weights are
    ones and biases zeros. Values matter for nothing but numerical sanity: accuracy is not measured.
    """
    gen = torch.Generator().manual_seed(seed)
    block = (torch.randn(1 << 20 | 7, generator=gen) * 0.02).to(device=device, dtype=dtype)
    done: dict[int, nn.Parameter] = {}
    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) in done:
                mod._parameters[name] = done[id(p)]
                continue
            t = torch.empty(p.shape, device=device, dtype=dtype)
            if name == "bias":
                t.zero_()
            elif p.ndim == 1:  # norm scales, the image newline
                t.fill_(1.0)
            else:
                flat = t.view(-1)
                for start in range(0, flat.numel(), block.numel()):
                    n = min(block.numel(), flat.numel() - start)
                    flat[start : start + n].copy_(block[:n])
            new = nn.Parameter(t, requires_grad=False)
            done[id(p)] = new
            mod._parameters[name] = new
    module.to(device)  # buffers (rotary tables, position ids) follow
    return module


def arch_config(name: str, tokens_per_frame: int | None = None, text_layers: int | None = None):
    """The shipped config of a real architecture (SDPA), optionally with another frame grid (where the
    config fixes the grid; the family's adapter changes it) or only its first ``text_layers`` decoder
    layers (same sizes and layer pattern: a real-size stack that fits a small machine)."""
    from adatp.errors import ConfigError
    from adatp.families import adapter_class_for
    from adatp.models.configs import load_architecture_config

    config = load_architecture_config(name)
    if tokens_per_frame is not None:
        adapter_class_for(config.model_type).resize_config_grid(config, tokens_per_frame)
    if text_layers is not None:
        text = config.text_config
        depth = text.num_hidden_layers
        if isinstance(text_layers, bool) or not isinstance(text_layers, int) or not 1 <= text_layers <= depth:
            raise ConfigError(f"--text-layers must be an integer in 1..{depth} for {name}, got {text_layers!r}")
        text.num_hidden_layers = text_layers
        if getattr(text, "layer_types", None):
            text.layer_types = list(text.layer_types[:text_layers])
        if getattr(text, "max_window_layers", None) is not None:
            text.max_window_layers = min(text.max_window_layers, text_layers)
    config._attn_implementation = "sdpa"
    config.text_config._attn_implementation = "sdpa"
    config.vision_config._attn_implementation = "sdpa"
    return config


def build_arch_model(name: str, device: torch.device, dtype: torch.dtype, tokens_per_frame: int | None = None,
                     text_layers: int | None = None):
    """A real-size model of a shipped architecture with cheap deterministic weights (parameters built on
    meta), optionally cut to its first ``text_layers`` decoder layers."""
    import transformers
    from transformers import GenerationConfig

    from adatp.families import supported_model_types

    config = arch_config(name, tokens_per_frame, text_layers)
    model_class = getattr(transformers, supported_model_types()[config.model_type])
    with parameters_on_meta():
        model = model_class(config)
    materialize(model, device, dtype)
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=0)
    return model.eval()
