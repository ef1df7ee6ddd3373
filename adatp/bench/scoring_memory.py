"""``adatp bench scoring-memory``: peak memory of adatp's attention scoring on ONE real-size decoder
layer (fp32, CPU), against that layer's own SDPA forward and against an N x N score matrix."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from adatp.bench.arch import arch_config, materialize, parameters_on_meta
from adatp.bench.memory import PeakMemory, limit_malloc_caching
from adatp.bench.results import environment
from adatp.errors import ConfigError


def build_decoder_layer(arch: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Layer 0 of ``arch``'s text decoder alone (cheap deterministic weights) and its rotary table."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    text = arch_config(arch).text_config
    if "linear_attention" in (getattr(text, "layer_types", None) or ()):
        raise ConfigError(f"{arch} mixes linear- and full-attention layers; scoring-memory measures one Qwen2 "
                          "softmax-attention layer: pick a Qwen2-decoder architecture (e.g. llava-onevision-qwen2-7b-ov-hf)")
    text._attn_implementation = "sdpa"
    with parameters_on_meta():
        layer = Qwen2DecoderLayer(text, layer_idx=0)
    materialize(layer, "cpu", dtype, seed)
    return layer.eval(), Qwen2RotaryEmbedding(text), text


def score_query_rows(layer: nn.Module, hidden: torch.Tensor, position_embeddings, num_query: int) -> torch.Tensor:
    """adatp's in-LLM scoring exactly as the runtime runs it at a stage layer: the adapter's q/k
    (input norm, q for the query rows only, k for all, RoPE) then ``query_row_attention``."""
    from adatp.families.base import qwen_query_key_states
    from adatp.ops.importance import query_row_attention

    n = hidden.shape[1]
    rows = torch.arange(n - num_query, n)
    # What LLaVA-OneVision's adapter runs for its Qwen2 layers; it reads only the layer it is given.
    q, k, scaling = qwen_query_key_states(layer, hidden, position_embeddings, rows)
    return query_row_attention(q, k, rows, scaling)


def scoring_memory(
    arch: str = "llava-onevision-qwen2-7b-ov-hf",
    frames: int = 64,
    tokens_per_frame: int = 196,
    text_tokens: int = 100,
    with_forward: bool = True,
    sweep: Sequence[float] = (0.25, 0.5, 1.0),
    step: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Peak memory of one decoder layer's SDPA forward, of adatp's attention scoring, and of both.

    Everything fp32 on CPU. The scoring is measured alone at several sequence lengths to show how
    it grows (linearly in N for a fixed number of query rows), against what an N x N attention
    matrix would need.
    """
    if frames < 1 or tokens_per_frame < 1 or text_tokens < 2:
        raise ConfigError("frames and tokens per frame must be >= 1, text tokens >= 2")
    malloc_limited = limit_malloc_caching()
    step(f"building one decoder layer of {arch}")
    layer, rotary, text = build_decoder_layer(arch)
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    gen = torch.Generator().manual_seed(0)

    def inputs(n: int):
        hidden = torch.randn(1, n, text.hidden_size, generator=gen)
        cos, sin = rotary(hidden, torch.arange(n)[None])
        return hidden, (cos, sin)

    def measure(fn) -> tuple[int, float, str]:
        meter = PeakMemory(torch.device("cpu"))
        t0 = time.perf_counter()
        with torch.no_grad(), meter.measure():
            result = fn()
        seconds = time.perf_counter() - t0
        del result
        return int(meter.peak_bytes or 0), seconds, meter.method

    full_n = frames * tokens_per_frame + 1 + text_tokens
    rows = []
    for frac in sweep:
        f = max(1, round(frames * frac))
        n = f * tokens_per_frame + 1 + text_tokens
        step(f"scoring alone, {f} frames ({n} tokens)")
        hidden, pe = inputs(n)
        peak, secs, method = measure(lambda: score_query_rows(layer, hidden, pe, text_tokens))
        rows.append({"frames": f, "seq_len": n, "scoring_peak_bytes": peak, "scoring_s": secs,
                     "nxn_fp32_bytes_all_heads": heads * n * n * 4,
                     "bytes_per_token": peak / n})
        del hidden, pe
    out: dict[str, Any] = {
        "schema": "adatp.bench.scoring_memory/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": arch,
        "layer": {"class": type(layer).__name__, "hidden": text.hidden_size, "heads": heads, "kv_heads": kv_heads,
                  "head_dim": head_dim, "intermediate": text.intermediate_size,
                  "parameters": sum(p.numel() for p in layer.parameters())},
        "inputs": {"frames": frames, "tokens_per_frame": tokens_per_frame, "visual_tokens": frames * tokens_per_frame,
                   "text_tokens": text_tokens, "seq_len": full_n, "query_rows": text_tokens, "dtype": "float32"},
        "environment": environment(torch.device("cpu"), torch.float32),
        "memory_method": method,
        "malloc_large_blocks_returned_to_os": malloc_limited,
        "scoring_sweep": rows,
        "nxn_fp32_bytes_all_heads": heads * full_n * full_n * 4,
        "nxn_fp32_bytes_one_head": full_n * full_n * 4,
        "scoring_bound_bytes": _scoring_bound(full_n, text.hidden_size, kv_heads, head_dim, text_tokens),
    }
    if with_forward:
        hidden, pe = inputs(full_n)
        step(f"vanilla layer forward ({full_n} tokens, SDPA)")
        out["forward_peak_bytes"], out["forward_s"], _ = measure(
            lambda: layer(hidden, attention_mask=None, position_embeddings=pe)
        )

        def both():
            scores = score_query_rows(layer, hidden, pe, text_tokens)
            return scores, layer(hidden, attention_mask=None, position_embeddings=pe)

        step(f"scoring + the same forward ({full_n} tokens)")
        out["scoring_plus_forward_peak_bytes"], out["scoring_plus_forward_s"], _ = measure(both)
        out["scoring_adds_bytes"] = out["scoring_plus_forward_peak_bytes"] - out["forward_peak_bytes"]
    return out


def _scoring_bound(n: int, hidden: int, kv_heads: int, head_dim: int, num_query: int, heads_per_chunk: int = 8) -> int:
    """Order of the scoring's fp32 temporaries: normed input (n x D), keys before/after RoPE, one
    chunk of repeated keys, and a few (chunk x q x n) logits tensors. Linear in n for fixed q."""
    return 4 * (n * hidden + 3 * kv_heads * n * head_dim + heads_per_chunk * n * head_dim
                + 3 * heads_per_chunk * num_query * n)
