"""Attention importance of visual tokens from the text query rows (docs/method.md, Stage 3; D3).

Only the query rows are scored: softmax(q k^T / sqrt(d_h)) in fp32 over every key each row can
see causally, never an N x N matrix and never ``output_attentions``.
"""

from __future__ import annotations

import math

import torch

from adatp.errors import ConfigError

#: per-token dominance signals of :func:`dominant_scores` (VisionZip's option; FlashVID and HoliTom use the first)
SIGNALS = ("mean-query", "norm")


def query_row_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_positions: torch.Tensor,
    scaling: float,
    heads_per_chunk: int = 8,
) -> torch.Tensor:
    """Attention probabilities of the query rows over all keys, averaged over heads and rows.

    Args:
        queries: (H, q, d_h) query rows (RoPE applied unless scoring pre-RoPE on purpose).
        keys: (H_kv, n, d_h) every key of the layer's input; GQA keys are repeated to the query
            heads (head h reads kv head h // (H / H_kv), as transformers' ``repeat_kv`` does).
        query_positions: (q,) index of each query row among the n keys (causal: row i sees keys
            0..query_positions[i]).
        scaling: 1/sqrt(d_h) as the layer uses it.
        heads_per_chunk: heads processed at once, to bound memory at H_chunk * q * n floats.
    Returns:
        (n,) float32 mean attention each key receives.
    """
    num_heads, num_q, _ = queries.shape
    num_kv, n, _ = keys.shape
    if num_heads % num_kv:
        raise ValueError(f"{num_heads} query heads are not a multiple of {num_kv} kv heads")
    group = num_heads // num_kv
    causal = torch.arange(n, device=keys.device)[None, :] > query_positions[:, None]  # (q, n) masked
    total = torch.zeros(n, dtype=torch.float32, device=keys.device)
    k32 = keys.float()
    for h0 in range(0, num_heads, heads_per_chunk):
        h1 = min(num_heads, h0 + heads_per_chunk)
        q = queries[h0:h1].float()  # (h, q, d)
        k = k32[torch.arange(h0, h1, device=keys.device) // group]  # (h, n, d)
        logits = torch.matmul(q, k.transpose(1, 2)) * scaling  # (h, q, n)
        logits = logits.masked_fill(causal, float("-inf"))
        total += torch.softmax(logits, dim=-1).sum(dim=(0, 1))
    return total / (num_heads * num_q)


def last_row_attention(
    queries: torch.Tensor, keys: torch.Tensor, query_positions: torch.Tensor, scaling: float
) -> torch.Tensor:
    """FastV's signal: attention from the last query row only, mean over heads. Shapes as above."""
    return query_row_attention(queries[:, -1:], keys, query_positions[-1:], scaling)


def dominant_scores(tokens: torch.Tensor, signal: str = "mean-query") -> torch.Tensor:
    """Per-token dominance of one frame: (c, D) -> (c,) float32.

    "mean-query": softmax over the frame of <g, x_p> / sqrt(D), g = mean_p x_p. "norm": ||x_p||.
    """
    x = tokens.float()
    if signal == "norm":
        return x.norm(dim=-1)
    if signal != "mean-query":
        raise ConfigError(f"dominant_signal must be one of {SIGNALS}, got {signal!r}")
    g = x.mean(0)
    return torch.softmax(x @ g / math.sqrt(x.shape[-1]), dim=0)
