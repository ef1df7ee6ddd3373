"""A benchmark's results as JSON: the environment it ran in, per run the samples, their statistics,
the ratios against vanilla, the FLOPs-ideal speed-up, the overhead and the peak memory."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adatp.bench.trials import BASELINE, METRICS, summarize, vs_vanilla

if TYPE_CHECKING:
    from adatp.bench.speed import BenchRun, SpeedBench

SCHEMA = "adatp.bench.speed/1"


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    env: dict[str, Any] = {
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "timer": "CUDA events recorded in hooks" if device.type == "cuda" else "time.perf_counter in hooks",
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_dict(bench: SpeedBench, run: BenchRun, command: list[str] | None = None) -> dict[str, Any]:
    """The JSON payload (schema ``adatp.bench.speed/1``)."""
    stats = {label: {k: summarize(v) for k, v in metrics.items()} for label, metrics in run.samples.items()}
    medians = {label: {k: stats[label][k]["median"] for k in METRICS} for label in stats}
    ratios = vs_vanilla(medians)
    vanilla_flops = run.info.get("vanilla_flops")
    runs = []
    for spec in run.specs:
        label = spec.label
        probe = run.probe.get(label, {})
        report = probe.get("report")
        flops = report.flops if report is not None else vanilla_flops
        ideal = 1.0 / flops.full_ratio if flops is not None and flops.full_ratio else None
        prefill_speedup = ratios[label]["speedup_llm_prefill_s"]
        llm = medians[label]["llm_prefill_s"]
        overhead = probe.get("overhead_s")
        entry = {
            "label": label,
            "method": spec.method,
            "flops_ratio": spec.flops_ratio,
            "samples": run.samples[label],
            "stats": stats[label],
            "vs_vanilla": ratios[label],
            "flops": flops.to_dict() if flops is not None else None,
            "ideal_prefill_speedup": ideal,
            "prefill_speedup_of_ideal": prefill_speedup / ideal if prefill_speedup and ideal else None,
            "overhead_s": overhead,
            "overhead_share_of_llm_prefill": overhead / llm if overhead is not None and llm else None,
            "peak_memory_bytes": probe.get("peak_memory_bytes"),
            "peak_memory_vs_vanilla": _ratio(probe.get("peak_memory_bytes"), run.probe.get(BASELINE, {}).get("peak_memory_bytes")),
            "kept_visual_tokens": report.stages[-1].kept if report is not None and report.stages else None,
            "visual_tokens_per_layer": report.visual_tokens_per_layer if report is not None else None,
            "stages": [s.to_dict() for s in report.stages] if report is not None else [],
        }
        runs.append(entry)
    memory_method = next((p.get("memory_method") for p in run.probe.values() if p.get("memory_method")), None)
    if memory_method and run.info.get("malloc_limited"):
        memory_method += " (separate untimed prefill per method, after every timing, with glibc returning blocks >128 KiB to the OS)"
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "environment": environment(bench.device, bench.dtype),
        "model": bench.model_info,
        "inputs": bench.input_info(),
        "settings": {
            "methods": list(dict.fromkeys(s.method for s in run.specs)),
            "flops_ratios": bench.cfg.flops_ratios,
            "repeats": bench.cfg.repeats,
            "warmup": bench.cfg.warmup,
            "new_tokens": bench.cfg.new_tokens,
            "encode_once": bench.cfg.encode_once,
            "order": "round-robin within each repeat, start rotated by one each repeat",
            "memory": memory_method,
            "overhead": "report.overhead_s from a separate time_overhead=True prefill (synchronised); not used for any timing",
            "vision": bench.vision_note(),
            "vision_tower_calls": bench.tower_calls,  # --encode-once: {"computed": 1, "reused": n}
        },
        "order": run.order,
        "runs": runs,
    }


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def write_json(payload: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
