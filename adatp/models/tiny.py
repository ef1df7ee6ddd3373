"""A tiny LLaVA-OneVision with random weights: the real architecture, shrunk, built offline.

No checkpoint can be downloaded where adatp is developed and tested, so the built-in default model
is built here: the real ``config.json`` of a llava-hf checkpoint (``adatp/models/configs``) with only
its sizes shrunk. Everything structural is kept: Qwen2 decoder with GQA, rope settings, tied or
untied embeddings, SigLIP tower without head, feature layer -1 with the "full" strategy, GELU
projector, image newline, anyres pinpoints (scaled to the tiny image size), and a vocabulary padded
to a multiple of 64 as the conversion script does. Its answers are meaningless.

With the defaults (112 px frames, 14 px patches) a frame is 8x8 patches, pooled to 4x4 = 16 tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
from transformers.utils import logging as hf_logging

from adatp.errors import ConfigError
from adatp.models.configs import load_architecture_dict
from adatp.models.tokenizer import (
    ENDOFTEXT,
    IM_END,
    IMAGE_TOKEN,
    LLAVA_ONEVISION_CHAT_TEMPLATE,
    VIDEO_TOKEN,
    build_tiny_tokenizer,
)

DEFAULT_ARCH = "llava-onevision-qwen2-0.5b-ov-hf"
MARKER_JSON = "adatp_tiny.json"
MARKER_MD = "ADATP_TINY.md"
#: Bump when the recipe changes so cached builds from an older recipe are rebuilt.
TINY_FORMAT_VERSION = 1
#: SigLIP preprocessing of the llava-hf checkpoints (their preprocessor_config.json), at the tiny size.
IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]
RESAMPLE_BICUBIC = 3
RESCALE_FACTOR = 1 / 255
REAL_IMAGE_SIZE = 384  # the pinpoints of the real configs are multiples of this
VOCAB_PAD = 64  # the conversion script pads the vocabulary to a multiple of 64


def _padded_vocab(n: int) -> int:
    return -(-n // VOCAB_PAD) * VOCAB_PAD


def _check_sizes(
    hidden: int, heads: int, kv_heads: int, vision_hidden: int, vision_heads: int, image_size: int, patch_size: int
) -> None:
    if hidden % heads:
        raise ConfigError(f"hidden={hidden} must be a multiple of heads={heads}")
    if heads % kv_heads:
        raise ConfigError(f"heads={heads} must be a multiple of kv_heads={kv_heads} (grouped-query attention)")
    if vision_hidden % vision_heads:
        raise ConfigError(f"vision_hidden={vision_hidden} must be a multiple of vision_heads={vision_heads}")
    if image_size % patch_size:
        raise ConfigError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")


def tiny_llava_onevision_config(
    arch: str = DEFAULT_ARCH,
    *,
    text_layers: int = 4,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    vision_intermediate: int = 64,
    image_size: int = 112,
    patch_size: int = 14,
    vocab_size: int | None = None,
) -> LlavaOnevisionConfig:
    """The real config of ``arch`` with only its sizes shrunk (fp32, sdpa attention).

    ``vocab_size`` defaults to the tiny tokenizer's size padded to a multiple of 64; the image and
    video token ids, bos and eos are the tiny tokenizer's. Per frame: ``ceil((image_size //
    patch_size) / 2) ** 2`` video tokens (16 with the defaults).
    """
    sizes = dict(text_layers=text_layers, hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate,
                 vision_hidden=vision_hidden, vision_layers=vision_layers, vision_heads=vision_heads,
                 vision_intermediate=vision_intermediate, image_size=image_size, patch_size=patch_size)
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(f"tiny model sizes must be positive integers, got {bad}")
    _check_sizes(hidden, heads, kv_heads, vision_hidden, vision_heads, image_size, patch_size)
    tokenizer = build_tiny_tokenizer()
    names = [ENDOFTEXT, IM_END, IMAGE_TOKEN, VIDEO_TOKEN]
    ids = dict(zip(names, tokenizer.convert_tokens_to_ids(names)))
    vocab = _padded_vocab(len(tokenizer)) if vocab_size is None else vocab_size
    if vocab < len(tokenizer):
        raise ConfigError(f"vocab_size={vocab} is smaller than the tiny tokenizer ({len(tokenizer)} tokens)")

    data: dict[str, Any] = load_architecture_dict(arch)
    data["text_config"].update(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=text_layers,
        max_window_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        bos_token_id=ids[ENDOFTEXT],  # Qwen2 uses <|endoftext|> as bos id and <|im_end|> as eos
        eos_token_id=ids[IM_END],
        torch_dtype="float32",
    )
    data["text_config"].pop("_name_or_path", None)
    data["vision_config"].update(
        hidden_size=vision_hidden,
        intermediate_size=vision_intermediate,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    # Same anyres grid (1..6 x 1..6 tiles), in tiles of the tiny image size.
    tiles = [[h // REAL_IMAGE_SIZE, w // REAL_IMAGE_SIZE] for h, w in data["image_grid_pinpoints"]]
    data["image_grid_pinpoints"] = [[th * image_size, tw * image_size] for th, tw in tiles]
    data.update(image_token_index=ids[IMAGE_TOKEN], video_token_index=ids[VIDEO_TOKEN], torch_dtype="float32")
    config = LlavaOnevisionConfig.from_dict(data)
    config._attn_implementation = "sdpa"
    return config


def tiny_llava_onevision_model(*, seed: int = 0, **config_overrides: Any) -> LlavaOnevisionForConditionalGeneration:
    """The random-weight tiny model in memory (fp32, eval mode), as :func:`build_tiny_llava_onevision` saves it.

    Seeded with ``torch.manual_seed(seed)`` inside a forked RNG, so the caller's RNG state is untouched.
    """
    config = tiny_llava_onevision_config(**config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.bos_token_id,  # <|endoftext|>, the tokenizer's pad token
    )
    return model


def _preprocessor_configs(config: LlavaOnevisionConfig) -> dict[str, dict[str, Any]]:
    """preprocessor_config.json (images), video_preprocessor_config.json and processor_config.json."""
    size = config.vision_config.image_size
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "resample": RESAMPLE_BICUBIC,
        "rescale_factor": RESCALE_FACTOR,
        "size": {"height": size, "width": size},
        "processor_class": "LlavaOnevisionProcessor",
    }
    image = dict(
        common,
        do_pad=True,
        image_grid_pinpoints=config.image_grid_pinpoints,
        image_processor_type="LlavaOnevisionImageProcessor",
    )
    video = dict(common, video_processor_type="LlavaOnevisionVideoProcessor")
    patches = size // config.vision_config.patch_size
    processor = {
        "image_token": IMAGE_TOKEN,
        "video_token": VIDEO_TOKEN,
        "num_image_tokens": patches * patches,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "processor_class": "LlavaOnevisionProcessor",
    }
    return {
        "preprocessor_config.json": image,
        "video_preprocessor_config.json": video,
        "processor_config.json": processor,
    }


def _marker(arch: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "adatp_tiny": True,
        "format_version": TINY_FORMAT_VERSION,
        "random_weights": True,
        "seed": seed,
        "architecture": arch,
        "config_overrides": overrides,
        "note": "tiny LLaVA-OneVision with RANDOM weights built by adatp; real architecture, shrunk sizes; "
        "answers are meaningless",
    }


def _marker_text(marker: dict[str, Any]) -> str:
    return (
        "# adatp tiny LLaVA-OneVision (RANDOM weights)\n\n"
        f"Built by `adatp.models.tiny.build_tiny_llava_onevision` from the `{marker['architecture']}` config with "
        f"only its sizes shrunk, seed {marker['seed']}. The weights are random: the model's answers are meaningless. "
        "It exists to exercise the pipeline (preprocessing, pruning, FLOPs, timing) offline.\n"
    )


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Writing model shards" bars: the CLI builds this model under its own progress display."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def build_tiny_llava_onevision(out_dir: str | os.PathLike[str], *, seed: int = 0, **config_overrides: Any) -> Path:
    """Write a complete local checkpoint of a random-weight tiny LLaVA-OneVision to ``out_dir``.

    Contents: model (safetensors, fp32) and generation config, tokenizer with the chat template,
    ``chat_template.json`` (as the llava-hf checkpoints ship it), image/video preprocessing configs
    matching the tiny image size, and the ``ADATP_TINY.md`` / ``adatp_tiny.json`` markers (written
    last). Deterministic: the same seed and overrides give an identical state dict.
    ``config_overrides`` go to :func:`tiny_llava_onevision_config` (``arch``, ``text_layers``, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch = config_overrides.get("arch", DEFAULT_ARCH)
    model = tiny_llava_onevision_model(seed=seed, **config_overrides)
    config = model.config
    tokenizer = build_tiny_tokenizer()
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_json(out / "chat_template.json", {"chat_template": LLAVA_ONEVISION_CHAT_TEMPLATE})
    for name, data in _preprocessor_configs(config).items():
        _write_json(out / name, data)
    marker = _marker(arch, seed, config_overrides)
    (out / MARKER_MD).write_text(_marker_text(marker), encoding="utf-8")
    _write_json(out / MARKER_JSON, marker)  # last: its presence means the build finished
    return out


def _is_complete(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json", "video_preprocessor_config.json")
    return marker.get("format_version") == TINY_FORMAT_VERSION and all((path / n).is_file() for n in needed)


def default_cache_dir() -> Path:
    """``$ADATP_CACHE`` if set, else ``~/.cache/adatp``."""
    env = os.environ.get("ADATP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adatp"


def tiny_model_dir(cache_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Path:
    """The tiny model's directory, built on first use and reused while complete.

    Lives in ``<cache_dir>/tiny-llava-onevision-seed{seed}`` (cache_dir: the argument, else
    ``$ADATP_CACHE``, else ``~/.cache/adatp``). It is built in a temporary sibling directory and
    renamed into place, so a killed build never leaves a half-written model behind that name.
    """
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / f"tiny-llava-onevision-seed{seed}"
    if _is_complete(target):
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=base))
    try:
        build_tiny_llava_onevision(tmp, seed=seed)
        if target.exists():  # stale (older recipe) or incomplete: replace it
            if _is_complete(target):  # another process finished first
                return target
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)  # atomic on one filesystem
        except OSError:
            if not _is_complete(target):  # lost a race to a concurrent builder, who left a complete dir
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- every shipped architecture: one entry point -------------------------------------------------
#
# Qwen-VL families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the shipped config.json with only sizes shrunk.
# Kept: M-RoPE and its section proportions, temporal patch size 2, spatial merge size 2, patch size,
# Qwen2.5-VL's window attention (one full-attention block last), Qwen3-VL's QK-norm, explicit head_dim,
# interleaved M-RoPE and deepstack (one deepstack level per vision block).

#: Tiny sizes per model_type. ``mrope_section`` keeps the real proportions at the tiny head_dim
#: (Qwen2/2.5-VL: 16:24:24 of 64 -> 2:3:3 of 8; Qwen3-VL: 24:20:20 of 64 -> 6:5:5 of 16).
QWEN_TINY_SIZES: dict[str, dict[str, Any]] = {
    "qwen2_vl": dict(text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=None,
                     mrope_section=[2, 3, 3], vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=128),
    "qwen2_5_vl": dict(text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=None,
                       mrope_section=[2, 3, 3], vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64),
    "qwen3_vl": dict(text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=32,
                     mrope_section=[6, 5, 5], vision_hidden=32, vision_layers=3, vision_heads=2, vision_intermediate=64),
}
# Qwen3.5: rotary on a quarter of head_dim (64 -> 16 dims, 11:11:10 of 32 -> 3:3:2 of 8); the real
# layer pattern (three linear_attention layers, then one full_attention) cut to text_layers.
QWEN_TINY_SIZES["qwen3_5"] = dict(
    text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=64, mrope_section=[3, 3, 2],
    linear_key_heads=2, linear_value_heads=4, linear_head_dim=16, vision_hidden=32, vision_layers=2, vision_heads=2,
    vision_intermediate=64)
QWEN_TINY_SIZES["qwen3_5_moe"] = dict(
    QWEN_TINY_SIZES["qwen3_5"], intermediate=None, experts=4, experts_per_token=2, expert_intermediate=32)

#: Preprocessing of the real checkpoints (their preprocessor_config.json / video_preprocessor_config.json).
#: Qwen2-VL and Qwen2.5-VL: CLIP mean/std, 14 px patches, min_pixels 56*56, max_pixels 28*28*16384 for
#: images; their video processors default to 128*28*28 .. 768*28*28 pixels a frame and 2 fps.
#: Qwen3-VL: mean/std 0.5, 16 px patches; video 4096 .. 25165824 pixels, 2 fps.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
QWEN_PREPROCESSOR: dict[str, dict[str, Any]] = {
    "qwen2_vl": dict(image_mean=CLIP_MEAN, image_std=CLIP_STD, min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28,
                     fps=2.0, processor_class="Qwen2VLProcessor", image_processor_type="Qwen2VLImageProcessor",
                     video_processor_type="Qwen2VLVideoProcessor"),
    "qwen2_5_vl": dict(image_mean=CLIP_MEAN, image_std=CLIP_STD, min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28,
                       fps=2.0, processor_class="Qwen2_5_VLProcessor", image_processor_type="Qwen2VLImageProcessor",
                       video_processor_type="Qwen2VLVideoProcessor"),
    "qwen3_vl": dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], min_pixels=4096, max_pixels=25165824,
                     fps=2.0, processor_class="Qwen3VLProcessor", image_processor_type="Qwen2VLImageProcessor",
                     video_processor_type="Qwen3VLVideoProcessor"),
}
#: Tiny models keep frames small: at most this many pixels a frame (8 x 8 patches of 14 px = 112 x 112).
TINY_MAX_PIXELS = {"qwen2_vl": 112 * 112, "qwen2_5_vl": 112 * 112, "qwen3_vl": 16 * 128 * 128}  # Qwen3-VL: whole video
TINY_MIN_PIXELS = {"qwen2_vl": 56 * 56, "qwen2_5_vl": 56 * 56, "qwen3_vl": 64 * 64}
for _family in ("qwen3_5", "qwen3_5_moe"):  # Qwen3.5 preprocesses video as Qwen3-VL does (Qwen3VLProcessor)
    QWEN_PREPROCESSOR[_family] = QWEN_PREPROCESSOR["qwen3_vl"]
    TINY_MAX_PIXELS[_family], TINY_MIN_PIXELS[_family] = TINY_MAX_PIXELS["qwen3_vl"], TINY_MIN_PIXELS["qwen3_vl"]


def architecture_model_type(name: str) -> str:
    """``model_type`` of a shipped architecture ("llava_onevision", "qwen2_vl", ...)."""
    return load_architecture_dict(name)["model_type"]


def _qwen_token_ids(tokenizer: Any) -> dict[str, int]:
    from adatp.models.tokenizer import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_PAD, VISION_START

    names = dict(bos=ENDOFTEXT, eos=IM_END, vision_start=VISION_START, vision_end=VISION_END,
                 vision_pad=VISION_PAD, image=IMAGE_PAD, video=VIDEO_PAD)
    return {k: int(tokenizer.convert_tokens_to_ids(v)) for k, v in names.items()}


def tiny_qwen_vl_config(arch: str, *, vocab_size: int | None = None, **sizes: Any):
    """The shipped config of Qwen-VL architecture ``arch`` with only its sizes shrunk (fp32, sdpa).

    ``sizes`` override :data:`QWEN_TINY_SIZES` of the family (text_layers, hidden, heads, kv_heads,
    intermediate, head_dim, mrope_section, vision_hidden, vision_layers, vision_heads, vision_intermediate).
    Token ids are the tiny tokenizer's (``build_tiny_tokenizer(qwen_vl=True)``).
    """
    from transformers import AutoConfig

    from adatp.models.tokenizer import build_tiny_tokenizer

    data: dict[str, Any] = load_architecture_dict(arch)
    family = data["model_type"]
    if family not in QWEN_TINY_SIZES:
        raise ConfigError(f"{arch!r} is a {family!r} model, not a Qwen-VL one; valid families: {sorted(QWEN_TINY_SIZES)}")
    unknown = sorted(set(sizes) - set(QWEN_TINY_SIZES[family]))
    if unknown:
        raise ConfigError(f"unknown tiny size(s) {unknown}; valid: {sorted(QWEN_TINY_SIZES[family])}")
    s = dict(QWEN_TINY_SIZES[family], **sizes)
    ints = {k: v for k, v in s.items() if k not in ("head_dim", "mrope_section") and not (k == "intermediate" and v is None)}
    bad = {k: v for k, v in ints.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(f"tiny model sizes must be positive integers, got {bad}")
    head_dim = s["head_dim"] or s["hidden"] // s["heads"]
    if s["head_dim"] is None and s["hidden"] % s["heads"]:
        raise ConfigError(f"hidden={s['hidden']} must be a multiple of heads={s['heads']}")
    if s["heads"] % s["kv_heads"]:
        raise ConfigError(f"heads={s['heads']} must be a multiple of kv_heads={s['kv_heads']} (grouped-query attention)")
    rotary = int(head_dim * data.get("text_config", {}).get("rope_parameters", {}).get("partial_rotary_factor", 1.0))
    if sum(s["mrope_section"]) * 2 != rotary:
        raise ConfigError(f"mrope_section {s['mrope_section']} must sum to the rotary dims / 2 = {rotary // 2}")
    if s["vision_hidden"] % s["vision_heads"]:
        raise ConfigError(f"vision_hidden={s['vision_hidden']} must be a multiple of vision_heads={s['vision_heads']}")
    tokenizer = build_tiny_tokenizer(qwen_vl=True)
    ids = _qwen_token_ids(tokenizer)
    vocab = _padded_vocab(len(tokenizer)) if vocab_size is None else vocab_size
    if vocab < len(tokenizer):
        raise ConfigError(f"vocab_size={vocab} is smaller than the tiny tokenizer ({len(tokenizer)} tokens)")
    text = dict(
        hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=s["text_layers"],
        num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], vocab_size=vocab,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"],
    )
    multimodal = dict(
        image_token_id=ids["image"], video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"],
    )
    vision = data["vision_config"]
    if family in ("qwen3_5", "qwen3_5_moe"):
        _shrink_qwen3_5(data, s, text, head_dim)
        data.update(multimodal)
    elif family == "qwen3_vl":
        data["text_config"].update(text, head_dim=head_dim, dtype="float32")
        data["text_config"]["rope_scaling"]["mrope_section"] = list(s["mrope_section"])
        depth = s["vision_layers"]
        # One deepstack level per block, as the 8B's three levels at blocks 8, 16, 24 of 27.
        vision.update(hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], depth=depth,
                      num_heads=s["vision_heads"], out_hidden_size=s["hidden"], num_position_embeddings=64,
                      deepstack_visual_indexes=list(range(min(3, depth))))
        data.update(multimodal)
    else:
        data.update(text, max_window_layers=s["text_layers"], torch_dtype="float32", **multimodal)
        data["rope_scaling"]["mrope_section"] = list(s["mrope_section"])
        data.pop("vision_token_id", None)
        if family == "qwen2_vl":
            vision.update(embed_dim=s["vision_hidden"], depth=s["vision_layers"], num_heads=s["vision_heads"],
                          mlp_ratio=s["vision_intermediate"] // s["vision_hidden"], hidden_size=s["hidden"])
        else:  # qwen2_5_vl: window attention, the last block full (as 7, 15, 23, 31 of 32)
            vision.update(hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"],
                          depth=s["vision_layers"], num_heads=s["vision_heads"], out_hidden_size=s["hidden"],
                          fullatt_block_indexes=[s["vision_layers"] - 1])
    data.pop("model_type")
    config = AutoConfig.for_model(family, **data)
    config._attn_implementation = "sdpa"
    config.text_config._attn_implementation = "sdpa"
    return config


def _shrink_qwen3_5(data: dict[str, Any], s: dict[str, Any], text: dict[str, Any], head_dim: int) -> None:
    """Qwen3.5 / Qwen3.5-MoE: the text sizes, the real layer pattern cut to ``text_layers``, small
    Gated DeltaNet heads, small experts (MoE), and a tower without deepstack."""
    t = data["text_config"]
    pattern = t["layer_types"]
    t.update(text, head_dim=head_dim, dtype="float32", layer_types=[pattern[i % len(pattern)] for i in range(s["text_layers"])],
             linear_num_key_heads=s["linear_key_heads"], linear_num_value_heads=s["linear_value_heads"],
             linear_key_head_dim=s["linear_head_dim"], linear_value_head_dim=s["linear_head_dim"])
    t["rope_parameters"]["mrope_section"] = list(s["mrope_section"])
    if "experts" in s:  # MoE: no dense MLP width
        t.pop("intermediate_size", None)
        t.update(num_experts=s["experts"], num_experts_per_tok=s["experts_per_token"],
                 moe_intermediate_size=s["expert_intermediate"], shared_expert_intermediate_size=s["expert_intermediate"])
    data["vision_config"].update(
        hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], depth=s["vision_layers"],
        num_heads=s["vision_heads"], out_hidden_size=s["hidden"], num_position_embeddings=64)


def tiny_model(name: str = DEFAULT_ARCH, *, seed: int = 0, **overrides: Any) -> Any:
    """The random-weight tiny model of shipped architecture ``name`` in memory (fp32, eval mode)."""
    from transformers import AutoModelForImageTextToText

    if architecture_model_type(name) == "llava_onevision":
        return tiny_llava_onevision_model(seed=seed, arch=name, **overrides)
    config = tiny_qwen_vl_config(name, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config).to(torch.float32).eval()
    _mild_decays(model)
    text = config.text_config
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, pad_token_id=text.bos_token_id
    )
    return model


def _mild_decays(model: Any) -> None:
    """Gated DeltaNet layers (Qwen3.5): decay rates A of 0.002 .. 0.05 a token. transformers' random
    init draws A up to 16, which forgets everything within a token, so the recurrent state would hold
    only the last token and no test could see which tokens a layer was fed."""
    with torch.no_grad():
        for module in model.modules():
            a_log = getattr(module, "A_log", None)
            if isinstance(a_log, torch.nn.Parameter):
                a_log.copy_(torch.linspace(0.002, 0.05, a_log.numel()).log().view_as(a_log))


def _qwen_preprocessor_configs(config: Any) -> dict[str, dict[str, Any]]:
    family = config.model_type
    pre = QWEN_PREPROCESSOR[family]
    v = config.vision_config
    common = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": pre["image_mean"], "image_std": pre["image_std"], "resample": RESAMPLE_BICUBIC,
        "rescale_factor": RESCALE_FACTOR, "patch_size": v.patch_size, "temporal_patch_size": v.temporal_patch_size,
        "merge_size": v.spatial_merge_size, "processor_class": pre["processor_class"],
    }
    size = {"shortest_edge": TINY_MIN_PIXELS[family], "longest_edge": TINY_MAX_PIXELS[family]}
    image = dict(common, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"], size=size,
                 image_processor_type=pre["image_processor_type"])
    video = dict(common, size=size, fps=pre["fps"], do_sample_frames=False,
                 video_processor_type=pre["video_processor_type"])
    return {"preprocessor_config.json": image, "video_preprocessor_config.json": video}


def build_tiny(name: str, out_dir: str | os.PathLike[str], *, seed: int = 0, **overrides: Any) -> Path:
    """Write a loadable tiny random-weight model directory of shipped architecture ``name``.

    Every name of :data:`adatp.models.configs.ARCHITECTURES` works (LLaVA ones included). The
    directory holds weights (safetensors, fp32), generation config, tokenizer with the family's chat
    template, ``chat_template.json``, the image/video preprocessing configs (pixel limits scaled to
    tiny frames) and the ``adatp_tiny.json`` marker, and loads with
    ``AutoModelForImageTextToText.from_pretrained(dir, attn_implementation="sdpa")``.
    """
    from adatp.models.configs import _check_name
    from adatp.models.tokenizer import QWEN2_VL_CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE

    _check_name(name)
    if architecture_model_type(name) == "llava_onevision":
        return build_tiny_llava_onevision(out_dir, seed=seed, arch=name, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(name, seed=seed, **overrides)
    family = model.config.model_type
    template = QWEN3_VL_CHAT_TEMPLATE if family in ("qwen3_vl", "qwen3_5", "qwen3_5_moe") else QWEN2_VL_CHAT_TEMPLATE
    tokenizer = build_tiny_tokenizer(qwen_vl=True, chat_template=template)
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_json(out / "chat_template.json", {"chat_template": template})
    for filename, data in _qwen_preprocessor_configs(model.config).items():
        _write_json(out / filename, data)
    marker = _marker(name, seed, overrides)
    marker["note"] = f"tiny {family} with RANDOM weights built by adatp; real architecture, shrunk sizes"
    (out / MARKER_MD).write_text(_marker_text(marker).replace("LLaVA-OneVision", family), encoding="utf-8")
    _write_json(out / MARKER_JSON, marker)
    return out
