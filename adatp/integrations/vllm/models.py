"""vLLM model classes with adatp's video-token selection (registered by :func:`adatp.integrations.vllm.register`).

Each class is vLLM's own Qwen-VL class with one method replaced: the video post-processing that
vLLM's EVS runs on the vision tower's output (``_postprocess_video_embeds_evs``). When the model's
config names an adatp method (``hf_overrides={"adatp_method": "fastvid"}``) and
``video_pruning_rate`` > 0, the retained tokens are adatp's choice instead of EVS's; the count is
EVS's (``compute_retained_tokens_count``, fixed when the prompt was built), and the kept tokens
carry their original M-RoPE positions through vLLM's own code (``compute_mrope_for_media`` and
``recompute_mrope_positions`` for Qwen2.5-VL, ``_create_final_video_embeddings`` for Qwen3-VL).
Without ``adatp_method`` the classes behave exactly as vLLM's (EVS and VidCom2 unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.logger import init_logger
from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from vllm.model_executor.models.qwen3_vl import Qwen3VLForConditionalGeneration
from vllm.multimodal.video_prune.evs import compute_mrope_for_media, compute_retained_tokens_count

from adatp.errors import ConfigError
from adatp.integrations.vllm.selection import RELEVANCE_NOTE, VideoSelection, VllmMethod, parse_vllm_method, select_video_tokens

# under "vllm" so that the message goes through vLLM's own log configuration (its handlers and level)
logger = init_logger("vllm.adatp")

#: the config attribute (set with vLLM's ``hf_overrides``) that names the adatp method.
CONFIG_KEY = "adatp_method"


class AdaTPVideoPruning:
    """Mixin: reads the method from the config at construction and runs the selection per video."""

    adatp_method: VllmMethod | None
    #: the last video's selection (tests and debugging read it through ``LLM.apply_model``)
    adatp_last: VideoSelection | None = None

    def _init_adatp(self) -> None:
        self.set_adatp_method(getattr(self.config, CONFIG_KEY, None))

    def set_adatp_method(self, spec: str | None) -> None:
        """Choose the adatp method (a spec such as ``"fastvid"``), or None for vLLM's own pruning."""
        self.adatp_last = None
        self.adatp_method = None if spec in (None, "") else parse_vllm_method(spec)
        if self.adatp_method is None:
            return
        method = self.multimodal_config.video_pruning_method
        if method != "evs":
            raise ConfigError(
                f"{CONFIG_KEY}={spec!r} replaces EVS's choice of tokens and uses its count; "
                f"video_pruning_method={method!r} is another vLLM method: leave it at 'evs'"
            )
        rate = self.multimodal_config.video_pruning_rate
        logger.info(
            "adatp: video tokens chosen by %s at video_pruning_rate=%s (count: vLLM's EVS rule); relevance %s",
            self.adatp_method.name, rate, RELEVANCE_NOTE,
        )

    def _adatp_select(self, emb: torch.Tensor, size: list[int], feature_dim: int | None = None) -> VideoSelection:
        t, hh, ww = (int(v) for v in size)
        m = self.visual.spatial_merge_size
        grid = (t, hh // m, ww // m)
        budget = compute_retained_tokens_count(grid[1] * grid[2], t, self.video_pruning_rate)
        selection = select_video_tokens(
            self.adatp_method, emb, grid, budget, feature_dim=feature_dim,
            segment_threshold=float(getattr(self.config, "adatp_segment_threshold", 0.90)),
        )
        self.adatp_last = selection
        return selection


class AdaTPQwen2_5_VL(AdaTPVideoPruning, Qwen2_5_VLForConditionalGeneration):
    """vLLM's Qwen2.5-VL with adatp's video selection."""

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_adatp()

    def _postprocess_video_embeds_evs(self, video_embeds_split, video_input):
        if self.adatp_method is None:
            return super()._postprocess_video_embeds_evs(video_embeds_split, video_input)
        second_per_grid_ts = video_input.get("second_per_grid_ts")
        if second_per_grid_ts is None:
            raise ValueError("second_per_grid_ts is required when video_pruning_rate > 0")
        tokens_per_second = self.config.vision_config.tokens_per_second
        out = []
        for emb, size, seconds in zip(video_embeds_split, video_input["video_grid_thw"].tolist(), second_per_grid_ts.long()):
            selection = self._adatp_select(emb, size)
            # The same positions EVS attaches: the full grid's M-RoPE rows, gathered at the kept tokens.
            positions = compute_mrope_for_media(
                size, self.visual.spatial_merge_size, tokens_per_second=tokens_per_second,
                video_second_per_grid=seconds.item(),
            )
            positions = positions.to(emb.device)[selection.kept.to(emb.device)]
            out.append(torch.cat([selection.values.to(emb.dtype), positions.to(emb.dtype)], dim=1))
        return tuple(out)


class AdaTPQwen3VL(AdaTPVideoPruning, Qwen3VLForConditionalGeneration):
    """vLLM's Qwen3-VL with adatp's video selection (deepstack channels follow the kept tokens)."""

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_adatp()

    def _postprocess_video_embeds_evs(self, video_embeds_split, video_input):
        if self.adatp_method is None or not self.is_multimodal_pruning_enabled:
            return super()._postprocess_video_embeds_evs(video_embeds_split, video_input)
        out = []
        for video_idx, (emb, size) in enumerate(zip(video_embeds_split, video_input["video_grid_thw"].tolist())):
            # The first visual_dim channels are the LLM-input embedding; deepstack levels follow.
            selection = self._adatp_select(emb, size, feature_dim=self.visual_dim)
            t, hh, ww = size
            m = self.visual.spatial_merge_size
            mask = torch.zeros(emb.shape[0], dtype=torch.bool, device=emb.device)
            mask[selection.kept.to(emb.device)] = True
            per_frame = mask.reshape(t, hh // m, ww // m).sum(dim=(1, 2)).long().tolist()
            out.append(
                self._create_final_video_embeddings(
                    video_embeddings=selection.values.to(emb.dtype),
                    num_tokens_per_frame=per_frame,
                    timestamps=video_input.timestamps[video_idx],
                    video_grid_thw=size,
                    retention_mask=mask,
                )
            )
        return tuple(out)
