"""Shared helpers of the vLLM plug-in tests: environment, checkpoints, prompts, one engine at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .kept_fixture import OUT, make_video, video_metadata, weights_sha256

# In-process engine (LLM.apply_model reads the model without pickling across processes), a small
# KV cache: the tests run on a shared 2-core machine.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

FIXTURE = json.loads(OUT.read_text(encoding="utf-8"))
#: the Qwen chat turn with one video, as the families' chat templates write it. Qwen3-VL's video
#: is the bare pad: vLLM 0.32 expands it into per-frame <|vision_start|> runs itself, and its M-RoPE
#: recompute after pruning (EVS too) fails on the template's extra outer <|vision_start|> (docs/vllm.md).
PROMPT = "<|im_start|>user\n{video}{question}<|im_end|>\n<|im_start|>assistant\n"
VIDEO = {"qwen3-vl-8b-instruct": "<|video_pad|>"}
DEFAULT_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"


def build_checkpoint(name: str, out_dir: Path) -> Path:
    """The fixture's tiny checkpoint, rebuilt here and checked byte for byte (weights sha256)."""
    from adatp.models.tiny_vllm import build_tiny_for_vllm

    path = build_tiny_for_vllm(name, out_dir)
    assert weights_sha256(path) == FIXTURE["records"][name]["weights_sha256"], (
        "the tiny checkpoint differs from the one the fixture was recorded with: "
        "re-record it (python -m tests.integrations.vllm_plugin.kept_fixture)"
    )
    return path


def video_request(
    name: str, question: str = "What happens in the video?", uuid: str | None = None, seed: int = 0
) -> dict:
    frames = make_video(seed)
    request = {"prompt": PROMPT.format(video=VIDEO.get(name, DEFAULT_VIDEO), question=question), "multi_modal_data": {"video": (frames, video_metadata(frames))}}
    if uuid is not None:  # a new id per request: vLLM must not reuse another request's (pruned) embeddings
        request["multi_modal_uuids"] = {"video": [uuid]}
    return request


def make_llm(model_dir: Path, **kwargs):
    from vllm import LLM

    return LLM(model=str(model_dir), enforce_eager=True, dtype="float32", limit_mm_per_prompt={"video": 1},
               max_model_len=1024, seed=0, **kwargs)


def greedy(max_tokens: int = 6):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0.0)


def free(llm) -> None:
    """Shut the engine down before the next one starts (at most one engine alive)."""
    import gc

    llm.llm_engine.engine_core.shutdown() if hasattr(llm.llm_engine, "engine_core") else None
    del llm
    gc.collect()
