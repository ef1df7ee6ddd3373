"""Token merging as a weighted average: the one operation every merging method shares.

A merging stage keeps ``B`` of the ``n`` alive tokens; every other alive token is either dropped
or averaged into one kept token. Methods describe this with ``merge_into`` (for each alive token,
the slot 0..B-1 of the kept token it joins, -1 for dropped) and ``weights`` (each token's weight
in the average, e.g. ToMe-style sizes: how many original tokens it already stands for).
"""

from __future__ import annotations

import torch

from adatp.errors import ConfigError


def check_merge(alive: torch.Tensor, kept: torch.Tensor, merge_into: torch.Tensor, weights: torch.Tensor | None) -> None:
    """Raise ConfigError unless ``merge_into`` is a valid merge plan for ``kept`` within ``alive``.

    Args:
        alive: (n,) alive visual indices, ascending.
        kept: (B,) kept visual indices, ascending, a subset of ``alive``.
        merge_into: (n,) int64 slot in ``kept`` per alive token, or -1 (dropped).
        weights: (n,) positive weights, or None.
    """
    n, b = alive.shape[0], kept.shape[0]
    if merge_into.shape != (n,):
        raise ConfigError(f"merge_into must have one entry per alive token ({n}), got shape {tuple(merge_into.shape)}")
    if weights is not None and (weights.shape != (n,) or bool((weights <= 0).any())):
        raise ConfigError(f"merge weights must be ({n},) and positive")
    if bool(((merge_into < -1) | (merge_into >= b)).any()):
        raise ConfigError(f"merge_into entries must be -1 or a kept slot in [0, {b})")
    rows = torch.searchsorted(alive, kept)
    if not torch.equal(merge_into[rows], torch.arange(b, device=merge_into.device)):
        raise ConfigError("every kept token must merge into its own slot")


def merge_tokens(
    values: torch.Tensor, merge_into: torch.Tensor, weights: torch.Tensor | None, num_kept: int
) -> torch.Tensor:
    """Weighted average of the tokens that join each kept slot.

    Args:
        values: (n, D) the alive tokens' vectors (embeddings or hidden states).
        merge_into: (n,) slot 0..num_kept-1 per token, -1 for dropped tokens.
        weights: (n,) weights of the average (None: all 1).
        num_kept: B, the number of slots.
    Returns:
        (B, D) in ``values``' dtype; accumulated in fp32 so bf16 inputs do not lose the average.
    """
    w = torch.ones(values.shape[0], device=values.device) if weights is None else weights.float()
    joined = merge_into >= 0
    slots, w, v = merge_into[joined], w[joined], values[joined].float()
    total = torch.zeros(num_kept, values.shape[1], device=values.device).index_add_(0, slots, v * w[:, None])
    mass = torch.zeros(num_kept, device=values.device).index_add_(0, slots, w)
    return (total / mass[:, None]).to(values.dtype)  # mass > 0: each slot holds its kept token
