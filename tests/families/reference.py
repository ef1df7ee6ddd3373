"""A hand-built reference for every family: feed each decoder layer only the tokens alive at that layer.

It uses the model's own modules (embeddings, tower, rotary module, decoder layers, norm, head) but
none of the runtime or the adapters: the video's place comes from the video token id, positions
from the model's ``get_rope_index`` on the full prompt (M-RoPE) or ``arange`` (LLaVA), and every
layer is called directly with SDPA's causal mask and a plain DynamicCache. The kept sets are given.
Qwen3-VL's deepstack levels are added after their layers to the alive visual tokens.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache

from . import video_token_id


def video_positions(model, ids: torch.Tensor) -> torch.Tensor:
    """(N,) sequence positions of the visual grid tokens (LLaVA's final newline excluded)."""
    pos = torch.nonzero(ids[0] == video_token_id(model)).flatten()
    return pos[:-1] if model.config.model_type == "llava_onevision" else pos


@torch.no_grad()
def prompt_features(model, inputs):
    """(embeds (1, L, D), positions (1, L) or (3, 1, L), rope delta, deepstack levels or [])."""
    cfg = model.config
    ids = inputs["input_ids"]
    inner = model.model
    embeds = inner.language_model.embed_tokens(ids)
    mask = (ids == video_token_id(model)).unsqueeze(-1)
    if cfg.model_type == "internvl":  # every frame is one image tile
        video = inner.get_image_features(
            pixel_values=inputs["pixel_values"],
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        ).pooler_output.flatten(0, 1)
        return embeds.masked_scatter(mask, video), torch.arange(ids.shape[1])[None], 0, []
    if cfg.model_type == "llava_onevision":
        video = inner.get_video_features(
            pixel_values_videos=inputs["pixel_values_videos"],
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        ).pooler_output.flatten(0, 1)
        return embeds.masked_scatter(mask, video), torch.arange(ids.shape[1])[None], 0, []
    out = inner.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True)
    video = torch.cat(out.pooler_output, 0)
    deepstack = [torch.cat(f, 0) for f in getattr(out, "deepstack_features", None) or []]
    extra = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
    positions, delta = inner.get_rope_index(
        ids, mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"], **extra
    )
    return embeds.masked_scatter(mask, video), positions, int(delta), deepstack


@torch.no_grad()
def reference_generate(model, inputs, kept_per_stage, steps, decode="generate", compact=False, caches=None):
    """Greedy decode; returns (tokens, list of (vocab,) logits: prefill's last, then each step).

    ``caches``: a list that receives the cache right after the prefill (a deep copy: KV of
    attention layers, conv and recurrent states of linear-attention layers).

    kept_per_stage: (layer, kept visual indices) pairs, or (layer, kept, merge_into, weights) for
        merging stages: before layer ``layer`` each kept token becomes the weighted mean of the alive
        tokens whose ``merge_into`` names its slot (in float64, then cast back). ``decode``: where new tokens sit, as the
    unpruned model puts them in transformers 5.23: "generate" (the last prompt position + 1 + step on
    every row) or "loop" (a caller passing no positions: prompt length + step + rope delta).
    ``compact``: LLaVA only, pre-LLM pruning only: the tokens alive at layer 0 are renumbered 0..n-1.
    """
    ids = inputs["input_ids"]
    seq_len = ids.shape[1]
    lm = model.model.language_model
    embeds, positions, delta, deepstack = prompt_features(model, inputs)
    vis = video_positions(model, ids)
    others = torch.ones(seq_len, dtype=torch.bool)
    others[vis] = False
    others = torch.nonzero(others).flatten()
    stages = {st[0]: st[1] for st in kept_per_stage}
    merges = {st[0]: (st[2], st[3]) for st in kept_per_stage if len(st) > 2 and st[2] is not None}
    kept = torch.arange(vis.numel())
    alive_per_layer, kept_per_layer = [], []
    for i in range(len(lm.layers)):
        kept = stages.get(i, kept)
        alive_per_layer.append(torch.sort(torch.cat([others, vis[kept]])).values)
        kept_per_layer.append(kept)
    if compact:
        renumbered = torch.zeros(seq_len, dtype=torch.long)
        renumbered[alive_per_layer[0]] = torch.arange(alive_per_layer[0].numel())
        positions = renumbered[None]
    cache = DynamicCache(config=lm.config)
    hidden, prev = embeds, torch.arange(seq_len)
    for i, layer in enumerate(lm.layers):
        alive = alive_per_layer[i]
        if i in merges:  # average slot by slot, in the rows of the tokens alive before this stage
            before = kept_per_layer[i - 1] if i > 0 else torch.arange(vis.numel())
            rows = torch.searchsorted(prev, vis[before])
            merge_into, weights = merges[i]
            weights = torch.ones(before.numel()) if weights is None else weights
            hidden = hidden.clone()
            for slot, token in enumerate(stages[i].tolist()):
                members = (merge_into == slot).nonzero().flatten()
                w = weights[members].double()
                mean = (hidden[0, rows[members]].double() * w[:, None]).sum(0) / w.sum()
                hidden[0, rows[before.tolist().index(token)]] = mean.to(hidden.dtype)
        hidden = hidden[:, torch.searchsorted(prev, alive)]
        pos = positions[..., alive]
        cos_sin = lm.rotary_emb(hidden, pos)
        hidden = layer(hidden, attention_mask=None, position_embeddings=cos_sin, past_key_values=cache, use_cache=True)
        if i < len(deepstack):
            rows = torch.searchsorted(alive, vis[kept_per_layer[i]])
            hidden = hidden.clone()
            hidden[0, rows] = hidden[0, rows] + deepstack[i][kept_per_layer[i]]
        prev = alive
    if caches is not None:
        caches.append(copy.deepcopy(cache))
    logits = [model.lm_head(lm.norm(hidden[:, -1]))[0]]
    tokens = [int(logits[-1].argmax())]
    for step in range(steps - 1):
        h = lm.embed_tokens(torch.tensor([[tokens[-1]]]))
        if compact:
            pos = torch.tensor([[alive_per_layer[0].numel() + step]])
        elif decode == "generate":
            pos = positions[..., -1:] + 1 + step
        else:
            pos = torch.full_like(positions[..., -1:], seq_len + step + delta)
        cos_sin = lm.rotary_emb(h, pos)
        for layer in lm.layers:
            h = layer(h, attention_mask=None, position_embeddings=cos_sin, past_key_values=cache, use_cache=True)
        logits.append(model.lm_head(lm.norm(h[:, -1]))[0])
        tokens.append(int(logits[-1].argmax()))
    return tokens, logits
