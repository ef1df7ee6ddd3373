"""adatp-tiny's training pieces on a tiny random model: the LoRA merge that assembly performs equals
the LoRA-wrapped model it was trained as, and the stage-1 text prompt carries the question."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

from adatp.errors import ConfigError
from adatp.organism.build import apply_trained_weights
from adatp.organism.train import TrainConfig, add_lora, describe_events, text_inputs


def test_merged_lora_equals_the_wrapped_model(tiny_model_dir, tmp_path):
    wrapped = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    lora = add_lora(wrapped, rank=4, alpha=8.0, seed=0)
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, module in lora.items():
        with torch.no_grad():
            module.B.copy_(torch.randn(module.B.shape, generator=g) * 0.05)
        tensors[f"lora.{name}.A"] = module.A.detach().clone()
        tensors[f"lora.{name}.B"] = (module.B.detach() * module.scale).contiguous()
    save_file(tensors, tmp_path / "w.safetensors")
    merged = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    plain = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    assert apply_trained_weights(merged, tmp_path / "w.safetensors") == {}
    ids = torch.randint(0, 100, (1, 12), generator=g)
    with torch.no_grad():
        want, got, before = (m(input_ids=ids).logits for m in (wrapped, merged, plain))
    assert (want - got).abs().max() <= 1e-4
    assert (want - before).abs().max() > 1e-2  # the LoRA does change the model


def test_unknown_tensor_names_are_refused(tiny_model_dir, tmp_path):
    save_file({"lora.model.nowhere.weight.A": torch.zeros(2, 2), "lora.model.nowhere.weight.B": torch.zeros(2, 2)},
              tmp_path / "w.safetensors")
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError, match="tensors the model does not"):
        apply_trained_weights(model, tmp_path / "w.safetensors")


def test_text_stage_prompt_holds_the_description_and_the_options(tiny_model_dir):
    from adatp.tasks.needle import make_item

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    item = make_item("train", 0)
    text = tokenizer.decode(text_inputs(tokenizer, describe_events(item) + "\n" + item.prompt())["input_ids"][0])
    event = item.events[0]
    assert f"A {event.colour} {event.shape} appeared briefly" in text
    assert "A. " in text and text.rstrip().endswith("assistant")


def test_bad_training_settings():
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(lora_lr=0)
    with pytest.raises(ConfigError, match="clip_lora_lr"):
        TrainConfig(clip_lora_lr=1.5)
    with pytest.raises(ConfigError, match="window_frames"):
        TrainConfig(window_frames=(4, 16))


def test_event_windows_hold_the_event_start_and_stay_inside_the_clip():
    from adatp.organism.train import event_window

    assert event_window(16, 4, event_start=7, shift=2) == slice(5, 9)  # event 2 frames into the window
    assert event_window(16, 4, event_start=1, shift=3) == slice(0, 4)  # clamped at the start
    assert event_window(16, 8, event_start=15, shift=0) == slice(8, 16)  # clamped at the end
    for start in range(16):
        for shift in range(20):
            w = event_window(16, 8, start, shift)
            assert w.stop - w.start == 8 and 0 <= w.start <= start < w.stop <= 16


def test_early_stage_cache_key_follows_only_the_early_settings():
    base = TrainConfig()
    assert TrainConfig(steps=7, window_steps=3, clip_lora_lr=1e-3).stage_key("early") == base.stage_key("early")
    assert TrainConfig(text_steps=599).stage_key("early") != base.stage_key("early")
    assert TrainConfig(frame_steps=1).stage_key("early") != base.stage_key("early")
    # stage 3's checkpoint follows stage 3's settings and everything before, not stage 4's
    assert TrainConfig(focus_steps=1, focus_lora_lr=1e-3).stage_key("clip") == base.stage_key("clip")
    assert TrainConfig(steps=7).stage_key("clip") != base.stage_key("clip")
    assert TrainConfig(frame_steps=1).stage_key("clip") != base.stage_key("clip")
    with pytest.raises(ConfigError, match="no cached stage"):
        base.stage_key("focus")


def test_token_cover_and_covered_tokens_by_hand():
    from adatp.organism.train import covered_tokens, token_cover

    # 4x4 grid of 56 px cells on a 224 px frame; a box over rows 0-1 (fully) and col 1 half + col 2 full.
    cover = token_cover((0, 84, 112, 168), grid=4, frame_size=224)
    assert cover[0].tolist() == [0.0, 0.5, 1.0, 0.0] and cover[1].tolist() == [0.0, 0.5, 1.0, 0.0]
    assert cover[2:].abs().sum() == 0
    marks = covered_tokens(cover, inside=0.6, outside=0.05)
    assert marks[0].tolist() == [0, -1, 1, 0] and marks[3].tolist() == [0, 0, 0, 0]


def test_stage_cache_continues_bit_for_bit(tiny_model_dir, tmp_path):
    """Runs that load stages 1-2b, or 1-3, from the cache write the same weights as one uninterrupted run."""
    from safetensors.torch import load_file

    from adatp.organism.train import train

    cfg = TrainConfig(text_steps=2, align_items=2, align_steps=2, align_batch=4, frame_steps=2, window_steps=1,
                      steps=2, focus_steps=2, warmup=1, scorer_epochs=2, threads=1)
    train(tiny_model_dir, tmp_path / "plain", cfg)
    train(tiny_model_dir, tmp_path / "first", cfg, stage_cache=tmp_path / "cache")
    after_clip = tmp_path / "cache" / f"clip-stages-{cfg.stage_key('clip')}.safetensors"
    assert after_clip.exists() and (tmp_path / "cache" / f"early-stages-{cfg.stage_key('early')}.safetensors").exists()
    rows = []
    train(tiny_model_dir, tmp_path / "resumed", cfg, log=rows.append, stage_cache=tmp_path / "cache")
    assert rows[0]["stage"] == "clip stages loaded"
    assert {r.get("stage") for r in rows if "step" in r} == {"focus"}
    assert json.loads((tmp_path / "resumed" / "train_config.json").read_text())["resumed_after_stages"] == "1-3"
    after_clip.unlink()
    rows = []
    train(tiny_model_dir, tmp_path / "resumed-early", cfg, log=rows.append, stage_cache=tmp_path / "cache")
    assert rows[0]["stage"] == "early stages loaded" and not any(r.get("stage") == "text" for r in rows)
    runs = ("plain", "first", "resumed", "resumed-early")
    plain, *others = (load_file(tmp_path / d / "adatp_tiny_trained.safetensors") for d in runs)
    assert all(plain.keys() == other.keys() for other in others)
    assert all(torch.equal(plain[k], other[k]) for other in others for k in plain)
    assert any(not torch.equal(plain[k], torch.zeros_like(plain[k])) for k in plain if ".B" in k)


def test_colour_shape_items_alternate_colour_and_shape():
    from adatp.tasks.needle import KINDS
    from adatp.organism.train import colour_shape_index

    indices = [colour_shape_index(k) for k in range(6)]
    assert indices == [0, 6, 10, 16, 20, 26]
    assert [KINDS[i % len(KINDS)] for i in indices] == ["colour", "shape"] * 3


def test_window_accuracy_whole_clip_agrees_with_the_needle_eval(tiny_model_dir, tmp_path):
    """The 16-frame column is the vanilla needle eval of the same items (colour item 0, shape item 6);
    shorter cuts ask the same items; a cut longer than the clip is refused."""
    from adatp.eval.harness import RunSpec, run_needle
    from adatp.organism.train import window_accuracy

    report = window_accuracy(tiny_model_dir, count=2, lengths=(1, 16))
    run = run_needle(tiny_model_dir, [RunSpec("none")], split="validation", count=7, out_dir=tmp_path)
    rows = [r for r in run.results[RunSpec("none")] if r["item_id"].split("-")[1] in ("000000", "000006")]
    assert [r["kind"] for r in rows] == ["colour", "shape"]
    whole, single = report["by_length"][16], report["by_length"][1]
    assert whole["all"] == [sum(r["correct"] for r in rows), 2]
    assert whole["colour"][1] == whole["shape"][1] == single["colour"][1] == 1 and single["all"][1] == 2
    with pytest.raises(ConfigError, match="cut length 17"):
        window_accuracy(tiny_model_dir, count=1, lengths=(17,))
