"""The shipped config.json values of the real checkpoints."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from transformers import LlavaOnevisionConfig

from adatp.errors import ConfigError
from adatp.families import FAMILIES
from adatp.models.configs import (
    ARCHITECTURES,
    SOURCE_KEY,
    architecture_source,
    load_architecture_config,
    load_architecture_dict,
)

# name: (hidden, layers, heads, kv_heads, intermediate, vocab, tie_word_embeddings)
EXPECTED_TEXT = {
    "llava-onevision-qwen2-0.5b-ov-hf": (896, 24, 14, 2, 4864, 152000, True),
    "llava-onevision-qwen2-7b-ov-hf": (3584, 28, 28, 4, 18944, 152128, False),
    "llava-video-7b-qwen2-hf": (3584, 28, 28, 4, 18944, 152128, False),
}
#: Qwen-VL checkpoints: name -> (model_type, hidden, layers, heads, kv_heads, intermediate, vocab, head_dim,
#: mrope_section, rope_theta, vision depth, patch, temporal patch, merge)
EXPECTED_QWEN = {
    "qwen2-vl-7b-instruct": ("qwen2_vl", 3584, 28, 28, 4, 18944, 152064, 128, [16, 24, 24], 1e6, 32, 14, 2, 2),
    "qwen2.5-vl-7b-instruct": ("qwen2_5_vl", 3584, 28, 28, 4, 18944, 152064, 128, [16, 24, 24], 1e6, 32, 14, 2, 2),
    "qwen3-vl-8b-instruct": ("qwen3_vl", 4096, 36, 32, 8, 12288, 151936, 128, [24, 20, 20], 5e6, 27, 16, 2, 2),
}
FAMILIES_DIR = resources.files("adatp.families")


def test_every_architecture_has_a_file_and_every_file_is_registered():
    files = {f"{d.name}/configs/{p.name}" for d in FAMILIES_DIR.iterdir() if d.joinpath("configs").is_dir()
             for p in d.joinpath("configs").iterdir() if p.name.endswith(".json")}
    assert files == set(ARCHITECTURES.values())
    assert set(EXPECTED_TEXT) | set(EXPECTED_QWEN) | {"internvl3_5-8b-hf", "glm-4.6v-flash", "qwen3.5-27b", "qwen3.5-35b-a3b"} == set(
        ARCHITECTURES)
    for name, path in ARCHITECTURES.items():  # each config sits in its own family's folder
        assert FAMILIES[load_architecture_dict(name)["model_type"]].split(".")[0] == path.split("/")[0]


@pytest.mark.parametrize("name", sorted(EXPECTED_QWEN))
def test_qwen_vl_values(name):
    family, hidden, layers, heads, kv, inter, vocab, head_dim, mrope, theta, depth, patch, tp, merge = EXPECTED_QWEN[name]
    config = load_architecture_config(name)
    text, vision = config.text_config, config.vision_config
    assert config.model_type == family
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (hidden, layers, heads)
    assert (text.num_key_value_heads, text.intermediate_size, text.vocab_size) == (kv, inter, vocab)
    assert (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads) == head_dim
    assert text.rope_parameters["mrope_section"] == mrope and text.rope_parameters["rope_theta"] == theta
    assert (vision.depth, vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (depth, patch, tp, merge)
    assert (config.video_token_id, config.image_token_id, config.vision_start_token_id) == (151656, 151655, 151652)
    assert config.tie_word_embeddings is False
    if family == "qwen3_vl":
        assert vision.deepstack_visual_indexes == [8, 16, 24] and text.rope_parameters["mrope_interleaved"]
    if family == "qwen2_5_vl":
        assert vision.fullatt_block_indexes == [7, 15, 23, 31] and vision.tokens_per_second == 2


def test_internvl3_5_8b_values():
    """InternViT-300M-448px + Qwen3-8B (the published sizes), 256 tokens a 448 px tile."""
    config = load_architecture_config("internvl3_5-8b-hf")
    text, vision = config.text_config, config.vision_config
    assert config.model_type == "internvl" and text.model_type == "qwen3"
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (4096, 36, 32, 8)
    assert (text.head_dim, text.intermediate_size, text.vocab_size) == (128, 12288, 151936)
    assert text.rope_parameters["rope_theta"] == 1_000_000.0 and config.tie_word_embeddings is False
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.intermediate_size) == (1024, 24, 16, 4096)
    assert list(vision.image_size) == [448, 448] and list(vision.patch_size) == [14, 14]
    assert config.image_seq_length == (448 // 14) ** 2 // 4 == 256 and config.downsample_ratio == 0.5
    assert config.vision_feature_select_strategy == "default" and config.image_token_id == 151671


def test_glm_4_6v_flash_values():
    """GLM-4.1V-9B's architecture: 40 x 4096 decoder, 2 KV heads, partial rotary over 64 of 128 dims."""
    config = load_architecture_config("glm-4.6v-flash")
    text, vision = config.text_config, config.vision_config
    assert config.model_type == "glm46v" and text.model_type == "glm4v_text"
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (4096, 40, 32, 2)
    assert (text.intermediate_size, text.vocab_size, text.attention_bias) == (13696, 151552, True)
    rope = text.rope_parameters
    assert rope["partial_rotary_factor"] == 0.5 and sum(rope["mrope_section"]) * 2 == 128 // 2
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size, vision.patch_size) == (24, 1536, 4096, 14)
    assert (vision.temporal_patch_size, vision.spatial_merge_size) == (2, 2)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_text_config_values(name):
    hidden, layers, heads, kv, inter, vocab, tie = EXPECTED_TEXT[name]
    config = load_architecture_config(name)
    text = config.text_config
    assert isinstance(config, LlavaOnevisionConfig)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (hidden, layers, heads)
    assert (text.num_key_value_heads, text.intermediate_size, text.vocab_size) == (kv, inter, vocab)
    assert config.tie_word_embeddings is tie and text.tie_word_embeddings is tie
    assert text.model_type == "qwen2" and text.hidden_act == "silu"
    assert text.rope_parameters["rope_theta"] == 1_000_000.0
    assert text.rms_norm_eps == 1e-6 and text.max_position_embeddings == 32768


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_vision_and_multimodal_values(name):
    config = load_architecture_config(name)
    vision = config.vision_config
    assert vision.model_type == "siglip_vision_model"
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers) == (1152, 4304, 26)
    assert (vision.num_attention_heads, vision.image_size, vision.patch_size) == (16, 384, 14)
    assert vision.vision_use_head is False
    assert (config.image_token_index, config.video_token_index) == (151646, 151647)
    assert config.vision_feature_layer == -1 and config.vision_feature_select_strategy == "full"
    assert config.projector_hidden_act == "gelu" and config.vision_aspect_ratio == "anyres_max_9"
    assert len(config.image_grid_pinpoints) == 36 and [384, 384] in config.image_grid_pinpoints
    assert [2304, 2304] in config.image_grid_pinpoints


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_plain_json_loads_with_the_config_class_and_source_stays_out(name):
    raw = json.loads(FAMILIES_DIR.joinpath(ARCHITECTURES[name]).read_text(encoding="utf-8"))
    assert isinstance(raw[SOURCE_KEY], dict) and raw[SOURCE_KEY]
    assert all(isinstance(v, str) and v for v in raw[SOURCE_KEY].values())
    data = {k: v for k, v in raw.items() if k != SOURCE_KEY}
    if name in EXPECTED_TEXT:
        config = LlavaOnevisionConfig(**data)
        assert config.text_config.hidden_size == EXPECTED_TEXT[name][0]
    assert SOURCE_KEY not in load_architecture_dict(name)
    assert SOURCE_KEY not in load_architecture_config(name).to_dict()
    assert architecture_source(name) == raw[SOURCE_KEY]


def test_loaded_dicts_are_independent_copies():
    a = load_architecture_dict("llava-onevision-qwen2-7b-ov-hf")
    a["text_config"]["hidden_size"] = 1
    assert load_architecture_dict("llava-onevision-qwen2-7b-ov-hf")["text_config"]["hidden_size"] == 3584


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        load_architecture_config("llava-onevision-qwen2-72b")
    message = str(info.value)
    assert "llava-onevision-qwen2-72b" in message
    assert all(name in message for name in ARCHITECTURES)
