"""A hand-built reference: feed each decoder layer only the tokens alive at that layer.

It uses the model's own modules (embeddings, tower, decoder layers, norm, head) but none of the
runtime: the kept sets come from the report, positions are the original ones, and every layer is
called directly with SDPA's causal mask and a plain DynamicCache.
"""

import torch
from transformers import DynamicCache


@torch.no_grad()
def reference_generate(model, inputs, kept_per_stage, steps, compact=False):
    """Greedy decode; returns (tokens, list of (vocab,) logits: prefill's last then each step).

    kept_per_stage: list of (layer, kept visual indices) as in report.stages, or of
        (layer, kept, merge_into, weights) for merging stages: before layer ``layer`` each kept
        token becomes the weighted mean of the alive tokens whose merge_into names its slot.
    """
    cfg = model.config
    ids = inputs["input_ids"]
    lm = model.model.language_model
    embeds = lm.embed_tokens(ids)
    video = model.model.get_video_features(
        pixel_values_videos=inputs["pixel_values_videos"],
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    ).pooler_output.flatten(0, 1)
    mask = (ids == cfg.video_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, video.to(embeds.dtype))
    seq_len = ids.shape[1]
    video_pos = torch.nonzero(ids[0] == cfg.video_token_id).flatten()
    start, n_visual = int(video_pos[0]), video_pos.numel() - 1  # one newline at the end
    layers = lm.layers
    alive_per_layer = []
    alive = torch.arange(seq_len)
    stages = {s[0]: s[1] for s in kept_per_stage}
    merges = {s[0]: (s[2], s[3]) for s in kept_per_stage if len(s) > 2 and s[2] is not None}
    visual_alive = {}
    alive_visual = torch.arange(n_visual)
    for i in range(len(layers)):
        visual_alive[i] = alive_visual
        if i in stages:
            kept = stages[i]
            alive_visual = kept
            alive = torch.cat([torch.arange(start), start + kept, torch.arange(start + n_visual, seq_len)])
        alive_per_layer.append(alive)
    positions = torch.arange(seq_len)
    cache = DynamicCache(config=lm.config)
    hidden = None
    prev = torch.arange(seq_len)
    for i, layer in enumerate(layers):
        a = alive_per_layer[i]
        current = embeds if hidden is None else hidden
        if i in merges:  # average, slot by slot, in the rows of the tokens alive before this stage
            current = current.clone()
            before = start + visual_alive[i]
            rows = torch.searchsorted(prev, before)
            merge_into, weights = merges[i]
            weights = torch.ones(len(before)) if weights is None else weights
            for slot, token in enumerate(stages[i].tolist()):
                members = (merge_into == slot).nonzero().flatten()
                w = weights[members].double()
                mean = (current[0, rows[members]].double() * w[:, None]).sum(0) / w.sum()
                current[0, rows[visual_alive[i].tolist().index(token)]] = mean.to(current.dtype)
        hidden = current[:, torch.searchsorted(prev, a)]
        pos = positions[a][None] if not compact else torch.arange(a.numel())[None]
        cos_sin = lm.rotary_emb(hidden, pos)
        hidden = layer(hidden, attention_mask=None, position_embeddings=cos_sin, position_ids=pos, past_key_values=cache, use_cache=True)
        prev = a
    logits = [model.lm_head(lm.norm(hidden[:, -1]))[0]]
    tokens = [int(logits[-1].argmax())]
    next_pos = seq_len if not compact else alive_per_layer[0].numel()
    for _ in range(steps - 1):
        h = lm.embed_tokens(torch.tensor([[tokens[-1]]]))
        pos = torch.tensor([[next_pos]])
        cos_sin = lm.rotary_emb(h, pos)
        for layer in layers:
            h = layer(h, attention_mask=None, position_embeddings=cos_sin, position_ids=pos, past_key_values=cache, use_cache=True)
        logits.append(model.lm_head(lm.norm(h[:, -1]))[0])
        tokens.append(int(logits[-1].argmax()))
        next_pos += 1
    return tokens, logits
