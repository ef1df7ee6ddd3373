"""DyCoke (Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast Video Large Language Models",
CVPR 2025, arXiv 2411.15024): its temporal token merging (TTM) stage, before the LLM.

Official TTM (``KD-TAO/DyCoke``, ``llava/model/llava_arch.py: dycole_ttm``, default
``merging_ratio`` K = 0.7 on LLaVA-OV's 196 pooled tokens a frame): frames are taken in windows of
4 consecutive frames [i, i+1, i+2, i+3]. Frame i is the window's pivot and is kept whole; frames
i+1 and i+2 are compared with frame i, frame i+3 with frame i+2, each token with the token at the
same grid position (cosine similarity). In every compared frame the int((1 - K) c) tokens LEAST
similar to their pivot are kept and the others are removed. So with K = 0.7 a window keeps
(1 + 3 * 0.3) / 4 = 47.5% of its tokens. The official code only drops the removed tokens; the
second half of DyCoke, dynamic KV-cache pruning during decoding (DP), is left out here.

Here (one stage at layer 0, default shape [(0, 1 - 0.75 K)] = [(0, 0.475)]):

* the same windows and pivots: token (t, p) of a non-pivot frame has pivot token (pi(t), p) with
  pi(i+1) = pi(i+2) = i, pi(i+3) = i+2; the similarity is the cosine of the projected tokens;
* the layer-0 budget B is met exactly by ranking ALL non-pivot tokens of the video by similarity
  and removing the most similar until B remain (the official count is fixed per frame);
* each removed token is MERGED into its pivot token (a plain average of the original tokens that
  end up in one slot, ``weights=None``) instead of being dropped, as adatp's merging methods merge;
  when the pivot token was itself merged, the token follows it (frame i+3 -> i+2 -> i);
* when B is below the number of window-pivot tokens (retention < about 1/4): the same rule is
  applied one level up, each window pivot frame (but the first) compared with the previous
  window's pivot frame and the most similar merged into it; below c (the first frame alone), the
  first frame's lowest-norm tokens are dropped, with whatever was merged into them.
  Ties break towards the lower visual index.

Other deviations from the official code (KD-TAO/DyCoke since commit 35cc532, which reads
``similarities[i // 2]`` as here; its first release read the previous pair): it keeps the topk
order (not raster order) of the kept tokens, and skips the i -> i+2 comparison in the last window
(so it keeps frame T-2 whole); here every window follows the rule above. ``pruning_ratio`` only sets the default shape: a
retention / flops_ratio target overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, StagePlan, TargetConfig, register_method
from adatp.ops.schedule import Schedule

WINDOW = 4


@dataclass
class DyCokeConfig(TargetConfig):
    """DyCoke settings.

    Attributes:
        pruning_ratio: K, the share of each non-pivot frame's tokens TTM removes (official 0.7); sets
            the default retention 1 - 0.75 K (47.5%) when no schedule / retention / flops_ratio is given.
    """

    pruning_ratio: float = field(default=0.7, metadata={"help": "K: share of non-pivot tokens merged (official 0.7)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.pruning_ratio
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 <= float(k) < 1.0:
            raise ConfigError(f"pruning_ratio must be a number in [0, 1), got {k!r}")


def pivot_frames(num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's pivot frame and merge level, for windows of 4 frames.

    Returns:
        pivot: (T,) frame compared with (-1 for frame 0): i+1, i+2 -> i; i+3 -> i+2; window
            pivot i > 0 -> i - 4 (the previous window's pivot).
        level: (T,) 1 for non-pivot frames, 2 for window pivots after the first, 3 for frame 0.
    """
    t = torch.arange(num_frames)
    offset = t % WINDOW
    start = t - offset
    pivot = torch.where(offset == 0, start - WINDOW, torch.where(offset == 3, start + 2, start))
    level = torch.where(offset > 0, 1, torch.where(start > 0, 2, 3))
    return pivot.clamp_min(-1), level


def temporal_merge(tokens: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DyCoke TTM with an exact budget: which tokens stay and where the others are merged.

    Args:
        tokens: (T, c, D) the video's tokens at their grid positions.
        budget: B, 0 <= B <= T c.
    Returns:
        kept: (B,) ascending visual indices.
        merge_into: (T c,) slot in ``kept`` per token, -1 when dropped.
    """
    num_frames, c, _ = tokens.shape
    n = num_frames * c
    if not 0 <= budget <= n:
        raise ConfigError(f"budget {budget} is outside [0, {n}]")
    device = tokens.device
    pivot, level = (a.to(device) for a in pivot_frames(num_frames))
    x = tokens.float()
    has_pivot = pivot >= 0
    sim = torch.zeros(num_frames, c, device=device)
    sim[has_pivot] = F.cosine_similarity(x[has_pivot], x[pivot[has_pivot]], dim=-1)
    norm = x.norm(dim=-1)
    token_level = level[:, None].expand(num_frames, c).reshape(-1)
    # Within levels 1-2: most similar first; level 3 (frame 0): lowest norm first.
    key = torch.where(token_level < 3, -sim.reshape(-1), norm.reshape(-1))
    order = torch.sort(key, stable=True).indices
    order = order[torch.sort(token_level[order], stable=True).indices]
    removed = order[: n - budget]
    positions = torch.arange(c, device=device)
    target = (pivot[:, None] * c + positions[None, :]).reshape(-1)  # pivot token (frame 0: masked next)
    target = torch.where(token_level < 3, target, torch.full_like(target, -1))
    dest = torch.arange(n, device=device)
    dest[removed] = target[removed]
    while True:  # follow merged pivots; chains go back in time, so this stops after <= T/4 + 2 rounds
        nxt = torch.where(dest >= 0, dest[dest.clamp_min(0)], dest)
        if torch.equal(nxt, dest):
            break
        dest = nxt
    is_kept = torch.ones(n, dtype=torch.bool, device=device)
    is_kept[removed] = False
    kept = torch.nonzero(is_kept).flatten()
    merge_into = torch.where(dest >= 0, torch.searchsorted(kept, dest.clamp_min(0)), dest)
    return kept, merge_into


@register_method
class DyCoke(PruningMethod):
    name = "dycoke"
    config_class = DyCokeConfig
    config: DyCokeConfig

    def default_shape(self, num_layers: int) -> Schedule:
        return [(0, 1.0 - 0.75 * self.config.pruning_ratio)]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        self.tokens = ctx.tokens  # decode-time KV pruning (DP) is not implemented: one stage at layer 0
        return self.pre_llm_stage(ctx, needs_hidden=True)

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.shape[0]:
            return alive
        tokens = self.whole_video_tokens(alive, hidden, self.tokens)
        kept, merge_into = temporal_merge(tokens, stage.budget)
        return Selection(alive[kept.to(alive.device)], merge_into.to(alive.device), None)
