"""FrameFusion (Fu et al., "FrameFusion: Combining Similarity and Importance for Video Token
Reduction on Large Vision Language Models", ICCV 2025, arXiv 2501.01986).

The method, as the official code (thu-nics/FrameFusion, ``framefusion/main.py``) runs it:

1. Similarity-based merging in the shallow layers. For every visual token the cosine similarity to
   the token at the same grid position in the previous (alive) frame is computed on the current
   states. Every token whose similarity is >= ``similarity_lower_bound`` (S_th, official default
   0.6; the README asks for the per-model value of the paper) is merged into its predecessor; a run
   of consecutive merged tokens at one position joins the run's first token, an equal-weight average
   of the states. The first round runs on the embeddings before layer 0, then one round after the
   attention of each layer, until the fraction of tokens merged in a round falls below
   ``ratio_lower_bound`` (official 0.1), or the merges alone reach the sparsity the cost allows (then
   only the most similar pairs up to that sparsity are merged and pruning is skipped).
2. Importance-based pruning at the layer after the last merging round: visual tokens are ranked by
   the attention the LAST token gives them (``scaled_dot_product_attention(..., num=1)``, averaged
   over heads) and the top ones are kept so that the total cost equals ``cost`` (official 0.3, a
   fraction of the token-layer product of 28 layers).

Mapping to adatp's StagePlans (defaults here):

- Default shape ``[(0, .70), (1, .60), (2, .27)]`` for decoders of >= 3 layers (2 layers:
  ``[(0, .70), (1, .27)]``; 1 layer: ``[(0, .27)]``): two merging rounds (before layer 0, before
  layer 1) and the attention pruning at layer 2. At 28 layers this shape costs
  (0.70 + 0.60 + 26 * 0.27) / 28 = 0.297 of the visual token-layers, about the official ``cost=0.3``.
  The shape is scaled to the shared target (retention / flops_ratio) like every method's.
- Every stage but the last in-LLM one is a merging stage (``needs_hidden``, no attention); the last
  stage at a layer >= 1 prunes by last-row attention (``scoring="last_row"``). A schedule whose only
  stage is at layer 0 merges only.
- ``similarity_threshold`` = S_th (default 0.6).

Deviations from the official code:

- Fixed merging budgets. Official merging is adaptive: each round merges every pair above S_th and
  the number of rounds depends on the video. adatp's stages have exact budgets fixed before the LLM
  (the shared target), so a merging stage keeping B of n tokens merges exactly n - B tokens into
  their same-position predecessors, the most similar pairs first (as the official code does when the
  pairs above S_th exceed its sparsity bound). When fewer than n - B pairs reach S_th the merging
  continues by similarity rank below the threshold; the number of such merges is reported by
  :meth:`FrameFusion.describe` (``merges_below_threshold``). So S_th does not change which tokens
  are merged, only the report. In the degenerate case where every position already holds a single
  token and the budget asks for fewer tokens than positions, whole position groups are dropped,
  the latest ones first (no attention exists at merging stages).
- The merging rounds run at the input of layers 0, 1, ... (embeddings, then the hidden states after
  each whole layer); the official rounds after layer 0's embedding round run after each layer's
  attention, before its MLP.
- Pruning scores use the pruned layer's own q/k on its input and prune before that layer's
  attention (docs/method.md D1, as FastV here); the official code reads the attention of that layer and
  prunes after it. The official pruning ratio is solved from ``cost`` and the measured merge
  sparsities; here the count is the stage budget.
- Merged tokens keep the position id of the run's first token (the official code also keeps the
  first token's position); weights are equal, as the official average (not ToMe sizes): a token
  merged twice counts once in the second average, as in the official code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, StagePlan, TargetConfig, register_method
from adatp.ops.schedule import Schedule
from adatp.ops.selection import top_k_global


@dataclass
class FrameFusionConfig(TargetConfig):
    """FrameFusion settings. ``similarity_threshold``: S_th, official 0.6 (reported, see module doc)."""

    similarity_threshold: float = field(
        default=0.6, metadata={"help": "S_th: cosine similarity above which same-position tokens of adjacent frames merge"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 <= float(self.similarity_threshold) <= 1.0:
            raise ConfigError(f"similarity_threshold must be in [-1, 1], got {self.similarity_threshold}")


def previous_frame_similarity(alive: torch.Tensor, hidden: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """Cosine similarity of each alive token to the alive token at the same grid position in the
    nearest earlier frame (official ``compute_similarity_and_token_index_by_patch``).

    Args:
        alive: (n,) ascending visual indices v = t * c + p.
        hidden: (n, D) the alive tokens' states.
        tokens_per_frame: c.
    Returns:
        (n,) float32 similarities in ``alive`` order; -inf for a position's earliest alive token.
    """
    pos = alive % tokens_per_frame
    order = torch.sort(pos, stable=True).indices  # position-major, frame order within a position
    h = F.normalize(hidden[order].float(), dim=-1)
    sim_sorted = torch.full((alive.shape[0],), float("-inf"), device=hidden.device)
    same = pos[order][1:] == pos[order][:-1]
    pair = (h[1:] * h[:-1]).sum(-1)
    sim_sorted[1:] = torch.where(same, pair, torch.full_like(pair, float("-inf")))
    sim = torch.empty_like(sim_sorted)
    sim[order] = sim_sorted
    return sim


def temporal_merge_plan(
    alive: torch.Tensor, similarity: torch.Tensor, tokens_per_frame: int, budget: int
) -> Selection:
    """Merge exactly n - budget tokens into their same-position predecessors, most similar first.

    A run of merged tokens at one position joins the run's first (unmerged) token. If the pairs run
    out, whole position groups are dropped, the latest positions' groups first (by the group root's
    visual index), until ``budget`` tokens remain.

    Args:
        alive: (n,) ascending visual indices.
        similarity: (n,) from :func:`previous_frame_similarity` (-inf: no predecessor).
        tokens_per_frame: c.
        budget: B <= n.
    Returns:
        Selection with kept (B,), merge_into (n,) and weights None (equal-weight average).
    """
    n = alive.shape[0]
    device = alive.device
    if not 0 <= budget <= n:
        raise ConfigError(f"cannot keep {budget} of {n} tokens")
    num_merge = n - budget
    valid = torch.isfinite(similarity)
    num_valid = int(valid.sum())
    k = min(num_merge, num_valid)
    key = torch.where(valid, similarity, torch.full_like(similarity, float("-inf")))
    top = torch.sort(key, descending=True, stable=True).indices[:k]
    merged = torch.zeros(n, dtype=torch.bool, device=device)
    merged[top] = True
    # Root of every token: the nearest unmerged token at or before it in position-major order.
    pos = alive % tokens_per_frame
    order = torch.sort(pos, stable=True).indices
    idx = torch.arange(n, device=device)
    marks = torch.where(merged[order], torch.full_like(idx, -1), idx)
    root_sorted = torch.cummax(marks, 0).values  # a position's first token is never merged
    root = torch.empty_like(idx)
    root[order] = order[root_sorted]  # (n,) root of each alive token, as a row of ``alive``
    is_root = ~merged
    extra = num_merge - k  # tokens still to remove once every pair is merged
    if extra > 0:
        roots = torch.nonzero(is_root).squeeze(1)  # ascending visual order
        is_root[roots[roots.shape[0] - extra:]] = False  # drop the latest groups entirely
    slot = torch.cumsum(is_root.long(), 0) - 1
    merge_into = torch.where(is_root[root], slot[root], torch.full_like(idx, -1))
    return Selection(alive[is_root], merge_into, None)


@register_method
class FrameFusion(PruningMethod):
    name = "framefusion"
    config_class = FrameFusionConfig
    config: FrameFusionConfig

    def default_shape(self, num_layers: int) -> Schedule:
        if num_layers >= 3:
            return [(0, 0.70), (1, 0.60), (2, 0.27)]
        return {2: [(0, 0.70), (1, 0.27)], 1: [(0, 0.27)]}[num_layers]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        self.tokens_per_frame = ctx.span.layout.tokens_per_frame
        self.merges: list[int] = []
        self.below_threshold: list[int] = []
        stages = self.stages_for(ctx, "last_row")
        out = []
        for i, st in enumerate(stages):
            prune = st.layer > 0 and i == len(stages) - 1
            out.append(st if prune else dataclasses.replace(st, scoring=None, needs_hidden=True))
        return out

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.shape[0]:
            return alive
        if not stage.needs_hidden:  # the attention-pruning stage
            if scores is None:
                raise ConfigError("FrameFusion's pruning stage needs attention scores")
            return alive[top_k_global(scores, stage.budget)]
        if hidden is None:
            raise ConfigError("FrameFusion's merging stages need the tokens' states")
        sim = previous_frame_similarity(alive, hidden, self.tokens_per_frame)
        selection = temporal_merge_plan(alive, sim, self.tokens_per_frame, stage.budget)
        merged = (selection.merge_into >= 0) & ~torch.isin(alive, selection.kept)
        self.merges.append(int(merged.sum()))
        self.below_threshold.append(int((merged & (sim < self.config.similarity_threshold)).sum()))
        return selection

    def describe(self) -> dict[str, Any]:
        return {
            "similarity_threshold": self.config.similarity_threshold,
            "merges_per_stage": list(getattr(self, "merges", [])),
            "merges_below_threshold": list(getattr(self, "below_threshold", [])),
        }
