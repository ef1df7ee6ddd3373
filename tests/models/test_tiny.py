"""The tiny tokenizer, the tiny config, the tiny checkpoint and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

import adatp.models.tiny as tiny
from adatp.errors import ConfigError
from adatp.inputs import prepare_inputs
from adatp.models.configs import load_architecture_config
from adatp.models.tiny import (
    MARKER_JSON,
    MARKER_MD,
    build_tiny_llava_onevision,
    tiny_llava_onevision_config,
    tiny_llava_onevision_model,
    tiny_model_dir,
)
from adatp.models.tokenizer import (
    LLAVA_ONEVISION_CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    _trained_tokenizer_json,
    build_tiny_tokenizer,
    tiny_corpus,
)

TEXT = "What happens after the red ball jumps? Ünïcode, digits 1234 and an emoji 😀."


# --- tokenizer -------------------------------------------------------------------------------


def test_tokenizer_specials_are_single_ids_in_qwen_order():
    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert ids == list(range(ids[0], ids[0] + 5)) and ids[-1] == len(tok) - 1
    for token, token_id in zip(SPECIAL_TOKENS, ids):
        assert tok(f"a {token} b", add_special_tokens=False).input_ids.count(token_id) == 1
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    assert tok.decode(tok("<|im_start|>user\n<video>hi<|im_end|>").input_ids, skip_special_tokens=True) == "user\nhi"
    assert tok.bos_token is None and tok("hi").input_ids == tok("hi", add_special_tokens=False).input_ids
    assert 1000 <= len(tok) <= 2000


def test_tokenizer_is_byte_level_and_round_trips_text():
    tok = build_tiny_tokenizer()
    assert tok.decode(tok(TEXT).input_ids) == TEXT
    assert tok.tokenize("What colour is the dog?") == ["What", "Ġcolour", "Ġis", "Ġthe", "Ġdog", "?"]


def test_tokenizer_training_is_deterministic():
    first = _trained_tokenizer_json.__wrapped__()  # bypass the per-process cache: train again
    assert first == _trained_tokenizer_json.__wrapped__() == _trained_tokenizer_json()
    assert tiny_corpus() == tiny_corpus() and len(tiny_corpus()) > 300


def test_tokenizer_save_and_auto_load(tmp_path):
    tok = build_tiny_tokenizer()
    assert tok.chat_template == LLAVA_ONEVISION_CHAT_TEMPLATE
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT).input_ids == tok(TEXT).input_ids
    assert loaded.convert_tokens_to_ids("<video>") == tok.convert_tokens_to_ids("<video>")
    assert loaded.chat_template == LLAVA_ONEVISION_CHAT_TEMPLATE
    assert (loaded.eos_token, loaded.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert set(SPECIAL_TOKENS) <= set(loaded.all_special_tokens)


def test_chat_template_renders_media_first():
    tok = build_tiny_tokenizer()
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Q?"}, {"type": "image"}, {"type": "video"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A."}]},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert rendered == "<|im_start|>user\n<image>\n<video>\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"


# --- config ----------------------------------------------------------------------------------


def test_tiny_config_shrinks_sizes_and_keeps_structure():
    real = load_architecture_config("llava-onevision-qwen2-0.5b-ov-hf")
    cfg = tiny_llava_onevision_config()
    tok = build_tiny_tokenizer()
    text, vision = cfg.text_config, cfg.vision_config
    assert (text.hidden_size, text.num_hidden_layers) == (64, 4)
    assert (text.num_attention_heads, text.num_key_value_heads) == (4, 2)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (32, 2, 112, 14)
    kept = ("vision_feature_layer", "vision_feature_select_strategy", "projector_hidden_act", "tie_word_embeddings",
            "vision_aspect_ratio", "multimodal_projector_bias", "use_image_newline_parameter")
    for attr in kept:
        assert getattr(cfg, attr) == getattr(real, attr), attr
    for attr in ("hidden_act", "rms_norm_eps", "rope_parameters", "max_position_embeddings", "model_type"):
        assert getattr(text, attr) == getattr(real.text_config, attr), attr
    for attr in ("hidden_act", "layer_norm_eps", "vision_use_head", "model_type"):
        assert getattr(vision, attr) == getattr(real.vision_config, attr), attr
    assert cfg.video_token_index == tok.convert_tokens_to_ids("<video>")
    assert cfg.image_token_index == tok.convert_tokens_to_ids("<image>")
    assert text.eos_token_id == tok.eos_token_id and text.vocab_size % 64 == 0 and text.vocab_size >= len(tok)
    assert cfg._attn_implementation == "sdpa"
    assert [112, 112] in cfg.image_grid_pinpoints and [672, 672] in cfg.image_grid_pinpoints
    assert len(cfg.image_grid_pinpoints) == len(real.image_grid_pinpoints)


def test_tiny_config_of_the_7b_keeps_untied_embeddings():
    cfg = tiny_llava_onevision_config("llava-onevision-qwen2-7b-ov-hf", vocab_size=2048)
    assert cfg.tie_word_embeddings is False and cfg.text_config.vocab_size == 2048


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(heads=3),
        dict(kv_heads=3),
        dict(vision_heads=3),
        dict(image_size=100),
        dict(vocab_size=10),
        dict(arch="nope"),
        dict(text_layers=0),
    ],
)
def test_tiny_config_rejects_inconsistent_sizes(kwargs):
    with pytest.raises(ConfigError):
        tiny_llava_onevision_config(**kwargs)


# --- checkpoint ------------------------------------------------------------------------------


def test_checkpoint_directory_is_complete(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    needed = {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "chat_template.json", "preprocessor_config.json", "video_preprocessor_config.json", MARKER_JSON, MARKER_MD,
    }
    assert needed <= names
    marker = json.loads((tiny_model_dir / MARKER_JSON).read_text())
    assert marker["random_weights"] is True and marker["seed"] == 0
    assert "RANDOM" in (tiny_model_dir / MARKER_MD).read_text()
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        pre = json.loads((tiny_model_dir / name).read_text())
        assert pre["size"] == {"height": 112, "width": 112} and pre["resample"] == 3
        assert pre["image_mean"] == pre["image_std"] == [0.5, 0.5, 0.5]
        assert pre["rescale_factor"] == pytest.approx(1 / 255)
    template = json.loads((tiny_model_dir / "chat_template.json").read_text())["chat_template"]
    assert template == LLAVA_ONEVISION_CHAT_TEMPLATE


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_build_is_deterministic_per_seed(tiny_model_dir, tmp_path):
    torch.manual_seed(12345)  # a state that differs from any seed-0 build's
    rng_before = torch.random.get_rng_state()
    again = _state(build_tiny_llava_onevision(tmp_path / "again", seed=0))
    assert torch.equal(rng_before, torch.random.get_rng_state())  # the caller's RNG is left alone
    first = _state(tiny_model_dir)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = _state(build_tiny_llava_onevision(tmp_path / "other", seed=1))
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_from_pretrained_round_trip_and_forward(tiny_model_dir, tiny_model):
    built = tiny_llava_onevision_model(seed=0).state_dict()
    loaded = tiny_model.state_dict()
    assert built.keys() == loaded.keys() and all(torch.equal(loaded[k], v) for k, v in built.items())
    assert not tiny_model.training and tiny_model.dtype == torch.float32
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 90, 120, 3), dtype=np.uint8)
    inputs = prepare_inputs(tiny_model_dir, frames, "What colour is the ball?")
    with torch.no_grad():
        logits = tiny_model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], tiny_model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_build_accepts_config_overrides(tmp_path):
    path = build_tiny_llava_onevision(tmp_path / "m", seed=3, text_layers=2, image_size=56)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path)
    assert model.config.text_config.num_hidden_layers == 2 and model.config.vision_config.image_size == 56
    assert json.loads((path / "video_preprocessor_config.json").read_text())["size"] == {"height": 56, "width": 56}
    assert json.loads((path / MARKER_JSON).read_text())["config_overrides"] == {"text_layers": 2, "image_size": 56}


# --- cache -----------------------------------------------------------------------------------


def test_tiny_model_dir_builds_once_then_reuses(tmp_path, monkeypatch):
    path = tiny_model_dir(cache_dir=tmp_path, seed=2)
    assert path == tmp_path / "tiny-llava-onevision-seed2" and (path / MARKER_JSON).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary directory left behind

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt a complete cached model")

    monkeypatch.setattr(tiny, "build_tiny_llava_onevision", fail)
    assert tiny_model_dir(cache_dir=tmp_path, seed=2) == path


def test_tiny_model_dir_honours_adatp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADATP_CACHE", str(tmp_path / "env-cache"))
    assert tiny_model_dir(seed=0) == tmp_path / "env-cache" / "tiny-llava-onevision-seed0"


def test_incomplete_or_stale_cache_is_rebuilt(tmp_path):
    target = tmp_path / "tiny-llava-onevision-seed0"
    target.mkdir()
    (target / "config.json").write_text("{}")  # a half-written directory without the marker
    assert (tiny_model_dir(cache_dir=tmp_path) / MARKER_JSON).is_file()
    marker = json.loads((target / MARKER_JSON).read_text())
    (target / MARKER_JSON).write_text(json.dumps(dict(marker, format_version=-1)))  # an older recipe
    tiny_model_dir(cache_dir=tmp_path)
    assert json.loads((target / MARKER_JSON).read_text())["format_version"] == tiny.TINY_FORMAT_VERSION


def test_killed_build_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    def killed(out_dir, **kwargs):
        (Path(out_dir) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny, "build_tiny_llava_onevision", killed)
    with pytest.raises(KeyboardInterrupt):
        tiny_model_dir(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- every shipped architecture ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(__import__("adatp.models.configs", fromlist=["ARCHITECTURES"]).ARCHITECTURES))
def test_build_tiny_every_architecture_loads_with_auto_class(tmp_path, name):
    from transformers import AutoModelForImageTextToText

    from adatp.models.tiny import build_tiny

    real = load_architecture_config(name)
    path = build_tiny(name, tmp_path / "m", seed=0)
    model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa")
    cfg = model.config
    assert type(cfg) is type(real) and cfg.model_type == real.model_type
    assert cfg.text_config._attn_implementation == "sdpa"
    tok = AutoTokenizer.from_pretrained(path)
    # the token that receives the video's features (InternVL: a tile's context token; GLM: the image token)
    token, key = {"llava_onevision": ("<video>", "video_token_id"), "internvl": ("<IMG_CONTEXT>", "image_token_id"),
                  "glm46v": ("<|image|>", "image_token_id")}.get(cfg.model_type, ("<|video_pad|>", "video_token_id"))
    assert tok.convert_tokens_to_ids(token) == getattr(cfg, key)
    assert json.loads((path / "adatp_tiny.json").read_text())["architecture"] == name
    if cfg.model_type in ("llava_onevision", "internvl"):  # 1-D RoPE
        return
    v, rv = cfg.vision_config, real.vision_config
    # the family structure is kept: M-RoPE proportions, temporal patch, merge size, patch size
    assert (v.temporal_patch_size, v.spatial_merge_size, v.patch_size) == (rv.temporal_patch_size, rv.spatial_merge_size, rv.patch_size)
    tiny_sec, real_sec = cfg.text_config.rope_parameters["mrope_section"], real.text_config.rope_parameters["mrope_section"]
    # within one frequency of the real proportions (Qwen3.5's 11:11:10 of 32 cannot be exact in 8: 3:3:2)
    assert [s / sum(tiny_sec) for s in tiny_sec] == pytest.approx([s / sum(real_sec) for s in real_sec], abs=1 / sum(tiny_sec))
    text = cfg.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(tiny_sec) * 2 == head_dim * text.rope_parameters.get("partial_rotary_factor", 1.0)  # GLM: half rotary
    if cfg.model_type == "qwen3_vl":
        assert len(v.deepstack_visual_indexes) == 3 and text.rope_parameters["mrope_interleaved"]
    if cfg.model_type == "qwen2_5_vl":
        assert v.fullatt_block_indexes == [v.depth - 1] and v.window_size == rv.window_size
    pre = json.loads((path / "video_preprocessor_config.json").read_text())
    assert (pre["patch_size"], pre["temporal_patch_size"], pre["merge_size"]) == (v.patch_size, v.temporal_patch_size, v.spatial_merge_size)
