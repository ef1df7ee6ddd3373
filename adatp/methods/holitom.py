"""HoliTom (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large Language Models",
NeurIPS 2025, arXiv 2505.21334; official code: github.com/cokeshao/HoliTom).

Two stages: holistic merging before the LLM, similarity merging inside it.

1. Before the LLM (layer 0), on the projected tokens at their grid positions:
   * Global redundancy-aware temporal segmentation: position p is *static* over frames s..e when
     cos(x_{t,p}, x_{t+1,p}) > tau for every t in s..e-1. A window [s, e] saves
     (static positions) x (e - s) tokens; a dynamic programme over all frames picks the partition
     into windows (at most ``max_window`` frames) that saves the most (ties: the shorter last
     window).
   * Static tokens of a window: each static position's frames are averaged into one token, and
     these are merged spatially by density peaks (DPC-kNN, k = min(clusters, 7)): every static
     token joins its nearest centre, which becomes beta * itself + (1 - beta) * mean(members).
   * Dynamic tokens (the other positions, every frame): the top tokens of each frame by attention
     (``dominant_ratio`` d = 0: no contextual merging, the rest are dropped).
   * Budgets: the kept count is spread over the "units" left after temporal merging (a static
     position of a window counts once), i.e. the official retain_ratio / (1 - reduced / N).
2. Inside the LLM (input of layer K, official HOLITOM_k = 18 of 28 layers, scaled to depth): keep
   the top (1 - r) of the visual tokens by the last prompt row's attention from layer K-1's map
   (FastV's rule), and merge every other token into its most cosine-similar kept token (hidden
   states at layer K's input) by the official running pairwise average: in token order, kept =
   (kept + token) / 2.

Official defaults (``holitom/llava_arch.py``, ``holitom/modeling_qwen2.py``,
``scripts/eval_ov-7b_holitom.sh``): RETAIN_RATIO 0.10 (code default; scripts also run 0.15/0.20),
T (tau) 0.80 (0.65 in the script's 0.10 run), BETA 0.6, D 0, K 7, MAX_WINDOW_SIZE 1024,
HOLITOM_k 18, HOLITOM_r 0.5; NO_BETA unset, so the beta merge is used. adatp's default shape is
[(0, 0.10), (round(18 L / 28), 0.05)], scaled to the target like every method (D8).

Deviations from the official code:

* Attention of dynamic tokens: the official code uses SigLIP's last-layer attention (mean over
  heads and query rows, 2x2 pooled); adatp does not capture it, so the frame's mean-query softmax
  softmax_p(<mean token, x_p> / sqrt(D)) on projected tokens stands in (as for VisionZip).
* Exact budgets: B is split over the groups (each window's static set, each frame's dynamic set)
  by largest remainder on their unit counts, instead of ceil / round per group. If fewer units
  than B remain after temporal merging (the official code then keeps fewer than B), the least
  static copies (lowest cosine to the previous frame) stay on their own until B fit.
* A window's merged static tokens sit at the window's first frame (the official grid layout puts
  them there too); their position ids are those of that frame.
* DPC ties: no random noise (strictly denser only; the earlier token wins ties).
* The in-LLM merge's running average is expressed as weights of one weighted average (kept token
  2^-M, i-th of M members 2^-(M-i+1)); weights below 1e-30 of their slot are clamped there.
* Newline tokens are never merged (adatp's rule for every method); the official in-LLM step
  treats LLaVA-OV's one newline like a visual token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, StagePlan, TargetConfig, register_method
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.clustering import density_peak_clusters
from adatp.ops.importance import dominant_scores
from adatp.ops.schedule import Schedule
from adatp.ops.selection import top_k_global

# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def consecutive_frame_cosine(tokens: torch.Tensor) -> torch.Tensor:
    """(T, c, D) -> (T-1, c): cos(x_{t,p}, x_{t+1,p}), the same position in consecutive frames."""
    x = F.normalize(tokens.float(), dim=-1)
    return (x[:-1] * x[1:]).sum(-1)


def select_windows(static: torch.Tensor, max_window: int) -> list[tuple[int, int]]:
    """The partition of frames into windows [s, e] that saves the most tokens.

    saved(s, e) = (positions static over all of s..e) * (e - s). Dynamic programme over the last
    window's start; a longer last window must save strictly more to win. (T-1, c) -> windows.
    """
    num_frames = static.shape[0] + 1
    best = [0.0] * (num_frames + 1)  # best[i]: frames 0..i-1
    start = [0] * (num_frames + 1)
    for i in range(1, num_frames + 1):
        best[i], start[i] = best[i - 1], i - 1  # frame i-1 alone
        still = torch.ones(static.shape[1], dtype=torch.bool, device=static.device)
        for s in range(i - 2, max(-1, i - 1 - max_window), -1):  # window s..i-1, growing backwards
            still &= static[s]
            value = best[s] + float(still.sum()) * (i - 1 - s)
            if value > best[i]:
                best[i], start[i] = value, s
    windows, i = [], num_frames
    while i > 0:
        windows.append((start[i], i - 1))
        i = start[i]
    return windows[::-1]


def beta_merge_weights(assign: torch.Tensor, centres: torch.Tensor, beta: float) -> torch.Tensor:
    """Weights of beta * centre + (1 - beta) * mean(members) as one weighted average per cluster.

    (m,) cluster of each point, (n,) centre indices -> (m,) weights: centre beta (1 when it has no
    members), each member (1 - beta) / members.
    """
    m = assign.numel()
    is_centre = torch.zeros(m, dtype=torch.bool, device=assign.device)
    is_centre[centres] = True
    members = torch.bincount(assign[~is_centre], minlength=centres.numel()).float()
    w = ((1.0 - beta) / members.clamp(min=1))[assign]
    w[centres] = torch.where(members > 0, torch.full_like(members, beta), torch.ones_like(members))
    return w


def holitom_selection(
    tokens: torch.Tensor, attention: torch.Tensor, budget: int, tau: float = 0.8, beta: float = 0.6,
    knn: int = 7, max_window: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """HoliTom's outer-LLM merging of a whole video.

    Args:
        tokens: (T, c, D); attention: (T, c) per-frame attention of each token; budget: B.
    Returns:
        kept (B,) ascending flat indices t*c + p, merge_into (T*c,), weights (T*c,) > 0, windows.
    """
    num_frames, c, _ = tokens.shape
    device = tokens.device
    sim = consecutive_frame_cosine(tokens)
    static = sim > tau
    windows = select_windows(static, max_window)
    masks = [static[s:e].all(0) if e > s else torch.zeros(c, dtype=torch.bool, device=device) for s, e in windows]
    units = sum(int(m.sum()) + (e - s + 1) * int((~m).sum()) for (s, e), m in zip(windows, masks))
    # Fewer units than B: the least static copies (lowest cosine to the previous frame) stay on
    # their own instead of joining their position's average, until B fit.
    alone = torch.zeros(num_frames, c, dtype=torch.bool, device=device)
    if budget > units:
        cand = torch.zeros(num_frames, c, dtype=torch.bool, device=device)  # later copies of static positions
        for (s, e), m in zip(windows, masks):
            cand[s + 1 : e + 1] |= m
        score = torch.cat([torch.full((1, c), 2.0, device=device), sim]).masked_fill(~cand, 3.0).reshape(-1)
        alone.view(-1)[torch.sort(score, stable=True).indices[: budget - units]] = True  # ties: earlier token
    # Groups: a window's static set (one unit per position), each frame's dynamic set.
    groups: list[tuple[str, int, torch.Tensor]] = []  # (kind, first frame, positions)
    for (s, e), m in zip(windows, masks):
        if m.any():
            groups.append(("static", s, torch.nonzero(m).squeeze(1)))
        for t in range(s, e + 1):
            if (~m).any():
                groups.append(("dynamic", t, torch.nonzero(~m).squeeze(1)))
    sizes = [g[2].numel() for g in groups]
    num_alone = int(alone.sum())
    quotas = allocate_segment_budgets(budget - num_alone, [float(n) for n in sizes], sizes, 0)
    merge_target = torch.full((num_frames * c,), -1, dtype=torch.long, device=device)  # flat index of the slot
    weights = torch.ones(num_frames * c, dtype=torch.float32, device=device)
    lone = torch.nonzero(alone.reshape(-1)).squeeze(1)
    kept_parts = [lone]
    merge_target[lone] = lone
    window_of = {s: (s, e) for s, e in windows}
    for (kind, t, pos), q in zip(groups, quotas):
        if q == 0:
            continue
        if kind == "dynamic":
            keep = pos[top_k_global(attention[t, pos], q)]
            kept_parts.append(t * c + keep)
            merge_target[t * c + keep] = t * c + keep
            continue
        s, e = window_of[t]
        present = (~alone[s : e + 1, pos]).float()  # (w, n) copies that join their position's average
        count = present.sum(0)  # >= 1: a window's first frame always joins
        mean = (tokens[s : e + 1, pos].float() * present[..., None]).sum(0) / count[:, None]  # (n, D) static tokens
        centres, assign = density_peak_clusters(mean, q, knn)
        slot = s * c + pos[centres]  # merged static tokens sit at the window's first frame
        kept_parts.append(slot)
        w = beta_merge_weights(assign, centres, beta) / count  # spread over the position's copies
        frames = torch.arange(s, e + 1, device=device)
        flat = (frames[:, None] * c + pos[None, :])[present.bool()]
        merge_target[flat] = slot[assign].expand(e - s + 1, -1)[present.bool()]
        weights[flat] = w.expand(e - s + 1, -1)[present.bool()]
    kept = torch.sort(torch.cat(kept_parts)).values
    merge_into = torch.where(merge_target >= 0, torch.searchsorted(kept, merge_target.clamp(min=0)), -1)
    return kept, merge_into, weights, windows


def running_average_merge(
    hidden: torch.Tensor, scores: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HoliTom's inner-LLM merge. (n, D) states, (n,) attention -> kept (keep,) ascending local
    indices, merge_into (n,), weights (n,): every other token joins its most cosine-similar kept
    token; in token order each join halves: kept = (kept + token) / 2."""
    n = hidden.shape[0]
    kept = torch.sort(top_k_global(scores, keep)).values
    is_kept = torch.zeros(n, dtype=torch.bool, device=hidden.device)
    is_kept[kept] = True
    rest = torch.nonzero(~is_kept).squeeze(1)  # ascending: the official loop order
    xn = F.normalize(hidden.float(), dim=-1)
    target = (xn[rest] @ xn[kept].T).argmax(1)  # slot of each merged token
    merge_into = torch.empty(n, dtype=torch.long, device=hidden.device)
    merge_into[kept] = torch.arange(keep, device=hidden.device)
    merge_into[rest] = target
    # The i-th of a slot's M joins (1-based, token order) weighs 2^-(M-i+1), the kept token 2^-M.
    total = torch.bincount(target, minlength=keep)
    sorted_t, perm = torch.sort(target, stable=True)
    rank = torch.arange(rest.numel(), device=hidden.device) - torch.searchsorted(sorted_t, sorted_t)
    order = torch.empty_like(target)
    order[perm] = rank + 1
    exponent = torch.zeros(n, dtype=torch.float64, device=hidden.device)
    exponent[kept] = -total.double()
    exponent[rest] = -(total[target] - order + 1).double()
    weights = torch.exp2(exponent).clamp(min=1e-30)  # sums to 1 per slot; tiny shares clamped
    return kept, merge_into, weights.float()


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------


@dataclass
class HoliTomConfig(TargetConfig):
    """HoliTom settings (official defaults).

    Attributes:
        tau: static threshold of the temporal segmentation (T, 0.8).
        beta: self-weight of a static cluster centre (BETA, 0.6).
        density_k: k of DPC-kNN (K, 7; capped at the cluster count).
        max_window: longest window in frames (MAX_WINDOW_SIZE, 1024).
        llm_layer_fraction: the in-LLM stage's layer as a fraction of depth (HOLITOM_k 18 / 28).
        llm_merge_ratio: share of the visual tokens merged away inside the LLM (HOLITOM_r, 0.5).
    """

    tau: float = field(default=0.8, metadata={"help": "static threshold (cosine) of temporal segmentation"})
    beta: float = field(default=0.6, metadata={"help": "self-weight of a static cluster centre"})
    density_k: int = field(default=7, metadata={"help": "k of DPC-kNN"})
    max_window: int = field(default=1024, metadata={"help": "longest temporal window (frames)"})
    llm_layer_fraction: float = field(default=18 / 28, metadata={"help": "in-LLM stage layer / depth"})
    llm_merge_ratio: float = field(default=0.5, metadata={"help": "HOLITOM_r: share merged inside the LLM"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta}")
        if not 0.0 <= self.llm_merge_ratio < 1.0:
            raise ConfigError(f"llm_merge_ratio must be in [0, 1), got {self.llm_merge_ratio}")
        if not 0.0 < self.llm_layer_fraction < 1.0:
            raise ConfigError(f"llm_layer_fraction must be in (0, 1), got {self.llm_layer_fraction}")
        if self.density_k < 1 or self.max_window < 1:
            raise ConfigError("density_k and max_window must be >= 1")
        if self.schedule is not None and self.schedule[0][0] != 0:
            raise ConfigError(f"HoliTom merges before the LLM first: its schedule must start at layer 0, got {self.schedule}")


@register_method
class HoliTom(PruningMethod):
    name = "holitom"
    config_class = HoliTomConfig
    config: HoliTomConfig

    def default_shape(self, num_layers: int) -> Schedule:
        cfg = self.config
        r0 = 0.10  # official RETAIN_RATIO
        layer = min(num_layers - 1, max(1, round(cfg.llm_layer_fraction * num_layers)))
        return [(0, r0), (layer, r0 * (1 - cfg.llm_merge_ratio))] if cfg.llm_merge_ratio > 0 else [(0, r0)]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        stages = self.stages_for(ctx, "last_row")
        self.tokens = ctx.tokens
        self.per_frame = ctx.span.layout.tokens_per_frame
        self.attention = torch.stack([dominant_scores(f) for f in ctx.tokens])  # (T, c) stand-in
        self.windows: list[tuple[int, int]] = []
        return [
            StagePlan(s.layer, s.retention, s.budget, None, needs_hidden=True) if s.layer == 0
            else StagePlan(s.layer, s.retention, s.budget, "last_row", needs_hidden=True, score_layer=s.layer - 1)
            for s in stages
        ]

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.numel():
            return alive
        cfg = self.config
        if stage.layer > 0:
            if scores is None or hidden is None:
                raise ConfigError("HoliTom's in-LLM stage needs attention scores and hidden states")
            kept, merge_into, weights = running_average_merge(hidden, scores, stage.budget)
            return Selection(alive[kept], merge_into, weights)
        tokens = self.whole_video_tokens(alive, hidden, self.tokens)
        kept, merge_into, weights, self.windows = holitom_selection(
            tokens, self.attention.to(tokens.device), stage.budget, cfg.tau, cfg.beta, cfg.density_k, cfg.max_window
        )
        return Selection(alive[kept.to(alive.device)], merge_into.to(alive.device), weights.to(alive.device))

    def kept_per_group(self, kept: torch.Tensor) -> list[int] | None:
        if not self.windows:
            return None
        frame = kept // self.per_frame
        return [int(((frame >= s) & (frame <= e)).sum()) for s, e in self.windows]

    def describe(self) -> dict[str, Any]:
        # HoliTom's temporal windows are its video segments.
        return {"windows": list(self.windows), "segments": list(self.windows)}
