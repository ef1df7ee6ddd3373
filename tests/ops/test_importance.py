"""Importance scores against an eager-attention run of the same layer (docs/method.md, tests)."""

import torch

from adatp.adapters import get_adapter
from adatp.ops.importance import last_row_attention, query_row_attention
from tests.runtime.conftest import build_tiny


def test_query_row_attention_equals_eager_attention_weights():
    model = build_tiny(layers=2, attn="sdpa")
    adapter = get_adapter(model)
    lm = model.model.language_model
    layer = lm.layers[1]
    g = torch.Generator().manual_seed(0)
    n, num_query = 40, 7
    hidden = torch.randn(1, n, 64, generator=g)
    positions = torch.cat([torch.arange(5), torch.arange(9, 9 + n - 5)])[None]  # non-contiguous, as after pruning
    cos_sin = lm.rotary_emb(hidden, positions)
    rows = torch.arange(n - num_query, n)
    with torch.no_grad():
        q, k, scaling = adapter.query_key_states(layer, hidden, cos_sin, rows)
        ours = query_row_attention(q, k, rows, scaling, heads_per_chunk=3)
        last = last_row_attention(q, k, rows, scaling)
        # Eager reference: the layer's own attention with weights returned, full N x N, causal.
        layer.self_attn.config._attn_implementation = "eager"
        causal = torch.full((n, n), float("-inf")).triu(1)[None, None]
        _, weights = layer.self_attn(
            hidden_states=layer.input_layernorm(hidden), position_embeddings=cos_sin, attention_mask=causal
        )
        layer.self_attn.config._attn_implementation = "sdpa"
    expected = weights[0, :, -num_query:].float().mean(dim=(0, 1))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(last, weights[0, :, -1].float().mean(0), atol=1e-5, rtol=0)
    assert abs(float(ours.sum()) - 1.0) < 1e-5
