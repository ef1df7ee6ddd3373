"""Density-peak clustering (DPC-kNN, Rodriguez & Laio 2014 with a k-nearest-neighbour density),
as PruneVid, FastVID, FlashVID and HoliTom use it on visual tokens.

Distances are Euclidean / sqrt(D); the density of a token is rho_i = exp(-mean of its k smallest
squared distances, itself included); delta_i is the distance to the nearest denser token (the
largest distance for a token no other is denser than); the peak score is rho_i * delta_i. The
peers break density ties with random noise; here ties are deterministic, in one of two ways:
``"strict"`` (only a strictly higher density counts as denser; FastVID, FlashVID, HoliTom) or
``"earlier"`` (of equal densities the earlier token counts as denser; PruneVid).
"""

from __future__ import annotations

import math

import torch

from adatp.errors import ConfigError
from adatp.ops.selection import top_k_global


def scaled_distances(x: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """(m, D) -> (m, m) float32 Euclidean distances / sqrt(D). ``exact`` avoids the matrix-product
    shortcut of ``torch.cdist`` (slower, no cancellation error on near-equal tokens)."""
    xf = x.float()
    mode = "donot_use_mm_for_euclid_dist" if exact else "use_mm_for_euclid_dist_if_necessary"
    return torch.cdist(xf, xf, compute_mode=mode) / math.sqrt(x.shape[-1])


def knn_density(dist: torch.Tensor, k: int) -> torch.Tensor:
    """rho_i = exp(-mean of the k smallest d_ij^2), self included, k capped at m. (m, m) -> (m,)."""
    near = torch.topk(dist, k=min(k, dist.shape[0]), dim=-1, largest=False).values
    return torch.exp(-(near**2).mean(-1))


def peak_scores(dist: torch.Tensor, density: torch.Tensor, ties: str = "strict") -> torch.Tensor:
    """rho_i * delta_i from distances (m, m) and densities (m,); ``ties`` as in the module docstring."""
    if ties == "strict":
        denser = density[None, :] > density[:, None]  # [i, j]: token j is denser than i
    elif ties == "earlier":
        rank = torch.empty(density.shape[0], dtype=torch.long, device=density.device)
        rank[torch.sort(density, descending=True, stable=True).indices] = torch.arange(density.shape[0], device=density.device)
        denser = rank[None, :] < rank[:, None]
    else:
        raise ConfigError(f"ties must be 'strict' or 'earlier', got {ties!r}")
    delta = torch.where(denser, dist, dist.max()).min(-1).values
    return density * delta


def density_peak_scores(x: torch.Tensor, k: int = 4) -> torch.Tensor:
    """DPC score rho * delta of each of m tokens, strict ties. (m, D) -> (m,) float32."""
    if x.shape[0] == 0:
        return x.new_zeros(0, dtype=torch.float32)
    dist = scaled_distances(x)
    return peak_scores(dist, knn_density(dist, k), "strict")


def density_peak_clusters(x: torch.Tensor, num_clusters: int, knn: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """DPC-kNN with strict ties and k = min(knn, num_clusters): the ``num_clusters`` highest-scoring
    tokens are centres, every token joins its nearest centre (the earlier centre on ties).

    Returns:
        centres (n,) ascending row indices, assignment (m,) index into ``centres``.
    """
    score = density_peak_scores(x, min(knn, num_clusters))
    centres = top_k_global(score, num_clusters)
    dist = torch.cdist(x.float(), x.float()[centres]) / math.sqrt(x.shape[-1])  # (m, n)
    assign = dist.argmin(1)
    assign[centres] = torch.arange(centres.numel(), device=x.device)
    return centres, assign


def dpc_knn(x: torch.Tensor, num_clusters: int, k: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """DPC-kNN as PruneVid runs it: exact distances, ``"earlier"`` ties, centres by score.

    Args:
        x: (n, D) features; num_clusters: 1 <= C <= n; k: neighbours (capped at n).
    Returns:
        assign (n,) int64 cluster 0..C-1 per token, centres (C,) int64 rows, highest score first
        (equidistant centres go to the higher-scoring one).
    """
    n = x.shape[0]
    if not 1 <= num_clusters <= n:
        raise ConfigError(f"cannot make {num_clusters} clusters of {n} tokens")
    dist = scaled_distances(x, exact=True)
    score = peak_scores(dist, knn_density(dist, k), "earlier")
    centres = torch.sort(score, descending=True, stable=True).indices[:num_clusters]
    assign = dist[:, centres].argmin(-1)
    assign[centres] = torch.arange(num_clusters, device=x.device)
    return assign, centres
