"""``uniform-frames``: the naive baseline, fewer frames sampled uniformly at the same token cost.

No paper: this is what a user does without a pruning method. For a budget of B visual tokens
(c per frame) it keeps every token of F = ceil(B / c) frames spread uniformly over the video and
drops the others; the model then sees a shorter video (``positions = "compact"``: the kept tokens
are renumbered as if only those frames had been sampled).

Rule (one stage, before the LLM; default shape [(0, 0.5)]):

* the frames are ``np.linspace(0, T - 1, F, dtype=int)``, LLaVA-OneVision's own evaluation
  sampling (:func:`adatp.video.io.sample_frame_indices`: first and last frame included; for F = 1
  it is frame 0); for F <= T the indices are distinct;
* each chosen frame contributes all its tokens in raster order, except the last chosen frame (in
  time order), which keeps only its first B - (F - 1) c tokens in raster order, so exactly B are
  kept.

Cost caveat: in HF ``generate`` the vision tower still encodes every sampled frame (the runtime
sees the projected tokens only after the tower has run), so this baseline saves LLM cost only; the
vision-encoder FLOPs of the dropped frames are still spent. Benchmark figures must say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method
from adatp.ops.schedule import Schedule
from adatp.video.io import sample_frame_indices


@dataclass
class UniformFramesConfig(TargetConfig):
    """Uniform-frames settings: only the shared target (one stage at layer 0; default retention 0.5)."""


def uniform_frame_tokens(num_frames: int, tokens_per_frame: int, budget: int) -> torch.Tensor:
    """The visual indices kept when ``budget`` tokens are spent on uniformly sampled whole frames.

    Args:
        num_frames: T.
        tokens_per_frame: c.
        budget: B, 0 <= B <= T c.
    Returns:
        (B,) int64 ascending visual indices v = t c + p.
    """
    total = num_frames * tokens_per_frame
    if not 0 <= budget <= total:
        raise ConfigError(f"budget {budget} is outside [0, {total}]")
    if budget == 0:
        return torch.zeros(0, dtype=torch.long)
    count = math.ceil(budget / tokens_per_frame)
    frames = torch.from_numpy(sample_frame_indices(num_frames, count))
    kept = (frames[:, None] * tokens_per_frame + torch.arange(tokens_per_frame)[None, :]).reshape(-1)
    return kept[:budget]  # frames ascend, so the cut falls on the last frame's raster tail


@register_method
class UniformFrames(PruningMethod):
    name = "uniform-frames"
    config_class = UniformFramesConfig
    config: UniformFramesConfig
    positions = "compact"

    def default_shape(self, num_layers: int) -> Schedule:
        return [(0, 0.5)]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        layout = ctx.span.layout
        self.num_frames, self.tokens_per_frame = layout.num_frames, layout.tokens_per_frame
        return self.pre_llm_stage(ctx)

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        if stage.budget == alive.shape[0]:
            return alive
        self.check_whole_video(self.name, alive, self.num_frames * self.tokens_per_frame)
        return uniform_frame_tokens(self.num_frames, self.tokens_per_frame, stage.budget).to(alive.device)

    def describe(self) -> dict:
        return {"note": "vision tower still encodes every frame: only LLM cost is saved"}
