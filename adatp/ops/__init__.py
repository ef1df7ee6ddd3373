"""Pure tensor functions for every step of AdaTP (no model inside)."""

from adatp.ops.budgets import (
    allocate_segment_budgets,
    normalize_relevance,
    segment_relevance,
    segment_weights,
    tokens_for_retention,
)
from adatp.ops.dedup import duplicate_mask, spatial_redundancy
from adatp.ops.flops import DecoderDims, VisionDims, decoder_flops, decoder_layer_flops, schedule_flops_ratio
from adatp.ops.importance import last_row_attention, query_row_attention
from adatp.ops.schedule import (
    default_schedule,
    parse_schedule,
    scale_to_flops_ratio,
    scale_to_retention,
    validate_schedule,
)
from adatp.ops.segmentation import adjacent_frame_similarity, segment_frames
from adatp.ops.selection import duplicate_last_scores, select_in_segments, top_k_global

__all__ = [
    "DecoderDims",
    "VisionDims",
    "adjacent_frame_similarity",
    "allocate_segment_budgets",
    "decoder_flops",
    "decoder_layer_flops",
    "default_schedule",
    "duplicate_last_scores",
    "duplicate_mask",
    "last_row_attention",
    "normalize_relevance",
    "parse_schedule",
    "query_row_attention",
    "scale_to_flops_ratio",
    "scale_to_retention",
    "schedule_flops_ratio",
    "segment_frames",
    "segment_relevance",
    "segment_weights",
    "select_in_segments",
    "spatial_redundancy",
    "tokens_for_retention",
    "top_k_global",
    "validate_schedule",
]
