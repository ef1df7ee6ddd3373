"""`adatp bench speed` and `adatp bench scoring-memory`: the arithmetic, the order, the JSON, the
command end to end on the tiny random model, and one clear line per bad input. No timing is
asserted: timings are measurements, not tests."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch

from adatp.bench.arch import materialize, parameters_on_meta
from adatp.bench.results import SCHEMA
from adatp.bench.scoring_memory import scoring_memory
from adatp.bench.speed import BenchConfig, SpeedBench
from adatp.bench.trials import Spec, build_specs, parse_ratios, summarize, trial_order, vs_vanilla
from adatp.cli import main
from adatp.errors import ConfigError
from tests.families import FAMILIES


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


# --- pure functions ----------------------------------------------------------------------------------
def test_ratios_against_vanilla_from_hand_made_samples():
    samples = {
        "none": {"llm_prefill_s": [2.0, 4.0, 3.0], "ttft_s": [5.0, 5.0, 6.0], "decode_tok_s": [10.0, 10.0, 12.0]},
        "adatp@0.273": {"llm_prefill_s": [1.0, 0.5, 0.75], "ttft_s": [2.5, 3.0, 2.0], "decode_tok_s": [20.0, 15.0, 30.0]},
    }
    medians = {label: {k: summarize(v)["median"] for k, v in m.items()} for label, m in samples.items()}
    assert medians["none"] == {"llm_prefill_s": 3.0, "ttft_s": 5.0, "decode_tok_s": 10.0}
    r = vs_vanilla(medians)
    assert r["none"]["ratio_llm_prefill_s"] == 1.0 and r["none"]["speedup_ttft_s"] == 1.0
    assert r["adatp@0.273"]["ratio_llm_prefill_s"] == pytest.approx(0.25)
    assert r["adatp@0.273"]["speedup_llm_prefill_s"] == pytest.approx(4.0)  # vanilla / pruned time
    assert r["adatp@0.273"]["speedup_ttft_s"] == pytest.approx(2.0)
    assert r["adatp@0.273"]["speedup_decode_tok_s"] == pytest.approx(2.0)  # a rate: pruned / vanilla
    assert r["adatp@0.273"]["ratio_decode_tok_s"] == pytest.approx(2.0)


def test_ratio_is_none_for_a_missing_figure_and_vanilla_is_required():
    r = vs_vanilla({"none": {"decode_tok_s": None}, "fastv@0.1": {"decode_tok_s": 3.0}})
    assert r["fastv@0.1"]["speedup_decode_tok_s"] is None
    with pytest.raises(ValueError, match="none"):
        vs_vanilla({"adatp@0.5": {"ttft_s": 1.0}})


def test_summarize_median_and_spread():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s == {"n": 5, "median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0}
    assert summarize([2.0, 4.0])["median"] == 3.0
    one = summarize([7.0])
    assert one["median"] == one["min"] == one["max"] == one["q1"] == one["q3"] == 7.0
    assert summarize([])["median"] is None
    assert summarize([None, 1.0])["n"] == 1


def test_trial_order_interleaves_round_robin_and_rotates():
    specs = [Spec("none"), Spec("adatp", 0.5), Spec("fastv", 0.5)]
    order = trial_order(specs, repeats=2, warmup=1)
    assert len(order) == 9
    rounds = [[s.label for r, s, _ in order if r == k] for k in range(3)]
    assert rounds == [
        ["none", "adatp@0.5", "fastv@0.5"],
        ["adatp@0.5", "fastv@0.5", "none"],
        ["fastv@0.5", "none", "adatp@0.5"],
    ]
    assert [w for _, _, w in order] == [True] * 3 + [False] * 6
    for k in range(3):  # every spec exactly once per round
        assert sorted(rounds[k]) == sorted(s.label for s in specs)


def test_specs_put_vanilla_first_once_and_check_inputs():
    specs = build_specs(["adatp", "none", "fastv"], [0.273, 0.1], ["none", "adatp", "fastv"])
    assert [s.label for s in specs] == ["none", "adatp@0.273", "adatp@0.1", "fastv@0.273", "fastv@0.1"]
    assert specs[1].prune_options() == {"flops_ratio": 0.273} and specs[0].prune_options() == {}
    with pytest.raises(ConfigError, match="unknown method 'magic'"):
        build_specs(["magic"], [0.5], ["none", "adatp"])
    for bad in ("0", "1.5", "-0.2", "abc", ""):
        with pytest.raises(ConfigError):
            parse_ratios(bad)
    assert parse_ratios("0.273, 1") == [0.273, 1.0]


def test_meta_build_then_cheap_init_is_real_deterministic_and_tied():
    from transformers import LlavaOnevisionForConditionalGeneration

    from adatp.models.tiny import tiny_llava_onevision_config

    def build():
        with parameters_on_meta():
            model = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config())
        return materialize(model, "cpu", torch.float32)

    a, b = build(), build()
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in a.parameters())
    assert a.lm_head.weight is a.model.language_model.embed_tokens.weight
    rotary = a.model.language_model.rotary_emb.inv_freq
    assert rotary.device.type == "cpu" and torch.isfinite(rotary).all() and rotary.abs().sum() > 0
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    norm = a.model.language_model.norm.weight
    assert torch.equal(norm, torch.ones_like(norm))


# --- the command ---------------------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_speed_cli_end_to_end_writes_json_and_png(tiny_model_dir, tmp_path, capsys):
    # 0.6: FastV keeps layers 0-1 of the 4 whole, so at 0.5 it would keep no visual token (refused).
    out, png = tmp_path / "speed.json", tmp_path / "speed.png"
    code, stdout, _ = run_main(
        ["bench", "speed", "--model", str(tiny_model_dir), "--methods", "adatp,fastv", "--flops-ratios", "0.6",
         "--frames", "4", "--repeats", "1", "--warmup", "0", "--new-tokens", "2",
         "--json", str(out), "--plot", str(png)], capsys)
    assert code == 0
    assert "adatp@0.6" in stdout and "fastv@0.6" in stdout
    payload = json.loads(out.read_text())
    assert payload["schema"] == SCHEMA
    assert {"environment", "model", "inputs", "settings", "order", "runs", "command"} <= set(payload)
    assert payload["inputs"]["frames"] == 4 and payload["inputs"]["visual_tokens"] == 4 * 16
    assert payload["order"] == [["none", "adatp@0.6", "fastv@0.6"]]
    labels = [r["label"] for r in payload["runs"]]
    assert labels == ["none", "adatp@0.6", "fastv@0.6"]
    for r in payload["runs"]:
        for metric in ("vision_s", "llm_prefill_s", "ttft_s", "decode_tok_s"):
            assert len(r["samples"][metric]) == 1 and r["samples"][metric][0] > 0
            assert r["stats"][metric]["n"] == 1
            assert f"speedup_{metric}" in r["vs_vanilla"]
        assert r["peak_memory_bytes"] is not None and r["flops"]["full_ratio"] > 0
    none, adatp = payload["runs"][0], payload["runs"][1]
    assert none["vs_vanilla"]["speedup_llm_prefill_s"] == 1.0 and none["overhead_s"] == 0.0
    assert none["flops"]["full_ratio"] == 1.0 and none["kept_visual_tokens"] is None
    assert adatp["flops"]["visual_ratio"] == pytest.approx(0.6, abs=0.05)
    assert adatp["ideal_prefill_speedup"] == pytest.approx(1 / adatp["flops"]["full_ratio"])
    assert adatp["overhead_s"] > 0 and adatp["kept_visual_tokens"] < 64
    ratio = adatp["vs_vanilla"]["speedup_llm_prefill_s"]
    assert adatp["prefill_speedup_of_ideal"] == pytest.approx(ratio / adatp["ideal_prefill_speedup"])
    assert _png_size(png) == (900, 450)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "none,magic"], "unknown method 'magic'"),
        (["--arch", "llava-13b"], "unknown architecture 'llava-13b'"),
        (["--flops-ratios", "0"], "--flops-ratios must be in (0, 1]"),
        (["--flops-ratios", "1.5"], "--flops-ratios must be in (0, 1]"),
        (["--flops-ratios", "nan"], "--flops-ratios must be a finite number"),
        (["--repeats", "0"], "--repeats"),
        (["--model", "/nonexistent/model"], "no model found"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(args, message, capsys):
    code, _, err = run_main(["bench", "speed", *args], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_scoring_memory_grows_linearly_not_quadratically():
    r = scoring_memory("llava-onevision-qwen2-0.5b-ov-hf", frames=4, tokens_per_frame=16, text_tokens=8,
                       with_forward=True, sweep=(0.5, 1.0))
    assert r["inputs"]["seq_len"] == 4 * 16 + 1 + 8
    assert [row["frames"] for row in r["scoring_sweep"]] == [2, 4]
    assert r["layer"]["hidden"] == 896 and r["layer"]["kv_heads"] == 2
    assert r["nxn_fp32_bytes_all_heads"] == 14 * 73 * 73 * 4
    assert r["forward_peak_bytes"] >= 0 and r["scoring_plus_forward_peak_bytes"] >= 0
    assert r["scoring_bound_bytes"] > 0


def test_scoring_memory_cli_rejects_an_unknown_arch(capsys):
    code, _, err = run_main(["bench", "scoring-memory", "--arch", "nope"], capsys)
    assert code == 2 and err.strip().startswith("error:") and "unknown architecture" in err


def test_arch_inputs_follow_the_config_grid():
    """The 0.5B architecture (built on meta: no weights) gets its own grid's synthetic inputs, and
    --tokens-per-frame resizes its tower through the adapter."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from adatp.adapters.base import get_adapter
    from adatp.bench.arch import arch_config
    from adatp.bench.load import family_inputs

    config = arch_config("llava-onevision-qwen2-0.5b-ov-hf")
    assert config.vision_config.image_size == 384  # 27 patches a side, pooled to 14 x 14 = 196
    with parameters_on_meta():
        model = LlavaOnevisionForConditionalGeneration(config)
    inputs = family_inputs(model, frames=3, text_tokens=20, device=torch.device("cpu"), dtype=torch.float32)
    ids = inputs["input_ids"]
    video = ids[0] == config.video_token_index
    assert int(video.sum()) == 3 * 196 + 1 and ids.shape[1] == 3 * 196 + 1 + 20
    pos = torch.nonzero(video).flatten()
    assert int(pos[-1] - pos[0]) + 1 == pos.numel()  # one contiguous block, text after it
    assert int(pos[0]) == 4  # ARCH_TEXT_BEFORE text ids first
    assert int((ids[0] == config.image_token_index).sum()) == 0
    assert tuple(inputs["pixel_values_videos"].shape) == (1, 3, 3, 384, 384)
    assert get_adapter(model).grid_extent() == (378 / 384, 378 / 384)  # the tower drops the last 6 px
    small = arch_config("llava-onevision-qwen2-0.5b-ov-hf", tokens_per_frame=16)
    assert math.ceil((small.vision_config.image_size // small.vision_config.patch_size) / 2) == 4
    assert arch_config("llava-onevision-qwen2-0.5b-ov-hf", tokens_per_frame=196).vision_config.image_size == 384
    for bad in (15, 0):
        with pytest.raises(ConfigError, match="square"):
            arch_config("llava-onevision-qwen2-0.5b-ov-hf", tokens_per_frame=bad)
    qwen = arch_config("qwen2.5-vl-7b-instruct", tokens_per_frame=16)  # Qwen-VL: the inputs set the grid
    assert qwen.to_dict() == arch_config("qwen2.5-vl-7b-instruct").to_dict()


def test_text_layers_keep_the_real_sizes_and_layer_pattern():
    """--text-layers N: the first N decoder layers of the shipped config, every size and the layer
    pattern unchanged (Qwen3.5-27B: three linear-attention layers, then a full-attention one)."""
    from adatp.bench.arch import arch_config

    full = arch_config("qwen3.5-27b").text_config
    cut = arch_config("qwen3.5-27b", text_layers=4).text_config
    assert cut.num_hidden_layers == 4 and cut.layer_types == full.layer_types[:4] == ["linear_attention"] * 3 + ["full_attention"]
    assert (cut.hidden_size, cut.intermediate_size, cut.head_dim) == (full.hidden_size, full.intermediate_size, full.head_dim)
    assert arch_config("qwen2.5-vl-7b-instruct", text_layers=2).text_config.num_hidden_layers == 2
    for bad in (0, 65, True):
        with pytest.raises(ConfigError, match="text-layers") as info:
            arch_config("qwen3.5-27b", text_layers=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="--arch"):
        SpeedBench(BenchConfig(["adatp"], [0.5], text_layers=2))
    with pytest.raises(ConfigError, match="linear") as info:  # it builds one Qwen2 softmax-attention layer
        scoring_memory("qwen3.5-27b", frames=1, tokens_per_frame=4, text_tokens=4)
    assert "\n" not in str(info.value)


def _tiny_arch_config(name: str, tokens_per_frame: int | None = None, text_layers: int | None = None):
    """The shipped config of ``name`` with its sizes shrunk: the real ones do not fit a test."""
    from adatp.models.tiny import architecture_model_type, tiny_llava_onevision_config, tiny_qwen_vl_config

    if architecture_model_type(name) == "llava_onevision":
        return tiny_llava_onevision_config(name)  # 16 tokens a frame
    return tiny_qwen_vl_config(name)


def test_speed_bench_arch_path_on_a_qwen_family(tmp_path, capsys, monkeypatch):
    """`adatp bench speed --arch qwen2.5-vl-7b-instruct --encode-once` end to end, with the shipped
    config shrunk (the real 7B does not fit this machine): the model, inputs, marks and FLOPs all come
    from the adapter, and the tower runs once in the whole run."""
    import adatp.bench.arch as arch

    monkeypatch.setattr(arch, "arch_config", _tiny_arch_config)
    out = tmp_path / "speed.json"
    code, stdout, _ = run_main(
        ["bench", "speed", "--arch", "qwen2.5-vl-7b-instruct", "--methods", "adatp,fastv", "--flops-ratios", "0.6",
         "--frames", "8", "--tokens-per-frame", "16", "--text-tokens", "12", "--repeats", "1", "--warmup", "0",
         "--new-tokens", "2", "--encode-once", "--json", str(out)], capsys)
    assert code == 0, stdout
    payload = json.loads(out.read_text())
    info = payload["inputs"]
    assert (info["frames"], info["grids"], info["tokens_per_frame"], info["visual_tokens"]) == (8, 4, 16, 64)
    runs = {r["label"]: r for r in payload["runs"]}
    assert runs["adatp@0.6"]["flops"]["visual_ratio"] == pytest.approx(0.6, abs=0.05)
    assert runs["none"]["samples"]["vision_s"][0] > 0 and runs["adatp@0.6"]["kept_visual_tokens"] < 64
    settings = payload["settings"]
    # 3 trials + 2 overhead probes (vanilla has none) + 3 memory probes reuse the one real call
    assert settings["vision_tower_calls"] == {"computed": 1, "reused": 8}
    assert "merger" in settings["vision"] and "timed once" in settings["vision"]


@pytest.mark.parametrize("arch", [f[1] for f in FAMILIES])
def test_encode_once_runs_the_tower_once_and_changes_no_logit(arch, monkeypatch):
    """--encode-once on every family: the same prefill logits as the pixels' path, vanilla and pruned,
    one real tower call, every trial timed, and the tower's own forward back after close()."""
    import adatp.bench.arch as arch_module
    from adatp.adapters.base import get_adapter

    monkeypatch.setattr(arch_module, "arch_config", _tiny_arch_config)

    def loaded(encode_once: bool) -> SpeedBench:
        bench = SpeedBench(BenchConfig(["adatp"], [0.6], arch=arch, frames=4, tokens_per_frame=16, text_tokens=12,
                                       repeats=1, warmup=0, new_tokens=1, device="cpu", encode_once=encode_once))
        bench.load()
        return bench

    def logits(bench: SpeedBench) -> list[torch.Tensor]:
        out = []
        for spec in bench.specs:  # vanilla, then adatp@0.6
            with bench._pruned(spec), torch.no_grad():
                out.append(bench._prefill()[0])
        return out

    plain, shared = loaded(False), loaded(True)
    try:
        assert shared.tower_calls == {"computed": 1, "reused": 0}
        assert plain.tower_calls is None and "once" not in plain.vision_note()
        for a, b in zip(logits(plain), logits(shared)):
            assert torch.equal(a, b), arch
        assert shared.tower_calls == {"computed": 1, "reused": 2}
        for spec in shared.specs:
            result = shared.trial(spec)
            assert result["vision_s"] > shared._tower_s > 0 and result["ttft_s"] > result["vision_s"]
        assert shared.tower_calls == {"computed": 1, "reused": 4}
        # Qwen-VL and GLM: the merger is in the tower; LLaVA and InternVL project after it
        inside = shared.model.config.model_type not in ("llava_onevision", "internvl")
        assert ("merger" in shared.vision_note()) == inside and "once" in shared.vision_note()
    finally:
        plain.close()
        shared.close()
    assert "forward" not in get_adapter(shared.model).vision_tower().__dict__
