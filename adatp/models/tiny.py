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
# Each family but LLaVA-OneVision (built above, the base of adatp-tiny) shrinks its shipped config with
# its own hooks (``adatp/families/<name>/tiny.py``: sizes, special tokens, chat template, preprocessing).


def architecture_model_type(name: str) -> str:
    """``model_type`` of a shipped architecture (its config's)."""
    return load_architecture_dict(name)["model_type"]


def tiny_qwen_vl_config(arch: str, *, vocab_size: int | None = None, **sizes: Any):
    """The shipped config of Qwen-VL architecture ``arch`` with only its sizes shrunk (fp32, sdpa): the
    family's hooks (``adatp/families/<name>/tiny.py``); kept for callers of the former Qwen-only builder."""
    if not hasattr(_family_tiny(architecture_model_type(arch)), "tiny_config"):
        raise ConfigError(f"{arch!r} is a {architecture_model_type(arch)!r} model: use tiny_llava_onevision_config")
    return tiny_family_config(arch, vocab_size=vocab_size, **sizes)


def _family_tiny(model_type: str) -> Any:
    """The family's tiny-model hooks (``adatp/families/<name>/tiny.py``)."""
    from adatp.families import family

    return family(model_type).tiny


def _family_tokenizer(hooks: Any, chat_template: str | None = None) -> Any:
    from adatp.models.tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer(extra_special=hooks.SPECIAL_TOKENS, chat_template=chat_template)


def tiny_family_config(arch: str, *, vocab_size: int | None = None, **sizes: Any) -> Any:
    """The shipped config of ``arch`` shrunk by its family's hooks (``tiny_config``), token ids from the
    tiny tokenizer with the family's special tokens (fp32, sdpa). ``vocab_size`` defaults to the
    tokenizer's size padded to a multiple of 64."""
    from transformers import AutoConfig

    data: dict[str, Any] = load_architecture_dict(arch)
    model_type = data.pop("model_type")
    hooks = _family_tiny(model_type)
    tokenizer = _family_tokenizer(hooks)
    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in hooks.SPECIAL_TOKENS}
    ids.update(bos=int(tokenizer.convert_tokens_to_ids(ENDOFTEXT)), eos=int(tokenizer.convert_tokens_to_ids(IM_END)))
    vocab = _padded_vocab(len(tokenizer)) if vocab_size is None else vocab_size
    if vocab < len(tokenizer):
        raise ConfigError(f"vocab_size={vocab} is smaller than the tiny tokenizer ({len(tokenizer)} tokens)")
    config = AutoConfig.for_model(model_type, **hooks.tiny_config(data, ids, vocab, **sizes))
    config._attn_implementation = "sdpa"
    config.text_config._attn_implementation = "sdpa"
    return config


def tiny_model(name: str = DEFAULT_ARCH, *, seed: int = 0, **overrides: Any) -> Any:
    """The random-weight tiny model of shipped architecture ``name`` in memory (fp32, eval mode)."""
    from transformers import AutoModelForImageTextToText

    hooks = _family_tiny(architecture_model_type(name))
    if hasattr(hooks, "model"):  # a family whose tiny models this module builds itself
        return hooks.model(name, seed=seed, **overrides)
    config = tiny_family_config(name, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config).to(torch.float32).eval()
    if hasattr(hooks, "adjust_weights"):  # a family whose random init needs a tweak for tests to see anything
        hooks.adjust_weights(model)
    text = config.text_config
    bos = getattr(text, "bos_token_id", None)
    bos = text.pad_token_id if bos is None else bos  # GLM's text config names no bos: its pad is <|endoftext|>
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=text.eos_token_id, pad_token_id=bos)
    return model


def build_tiny(name: str, out_dir: str | os.PathLike[str], *, seed: int = 0, **overrides: Any) -> Path:
    """Write a loadable tiny random-weight model directory of shipped architecture ``name``.

    Every name of :data:`adatp.models.configs.ARCHITECTURES` works (LLaVA ones included). The
    directory holds weights (safetensors, fp32), generation config, tokenizer with the family's chat
    template, ``chat_template.json``, the image/video preprocessing configs (pixel limits scaled to
    tiny frames) and the ``adatp_tiny.json`` marker, and loads with
    ``AutoModelForImageTextToText.from_pretrained(dir, attn_implementation="sdpa")``.
    """
    from adatp.models.configs import _check_name
    _check_name(name)
    hooks = _family_tiny(architecture_model_type(name))
    if hasattr(hooks, "build"):  # a family whose tiny directories this module builds itself
        return hooks.build(name, out_dir, seed=seed, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(name, seed=seed, **overrides)
    family = model.config.model_type
    hooks = _family_tiny(family)
    template = hooks.CHAT_TEMPLATE
    tokenizer = _family_tokenizer(hooks, template)
    preprocessor = hooks.preprocessor_files(model.config)
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_json(out / "chat_template.json", {"chat_template": template})
    for filename, data in preprocessor.items():
        _write_json(out / filename, data)
    marker = _marker(name, seed, overrides)
    marker["note"] = f"tiny {family} with RANDOM weights built by adatp; real architecture, shrunk sizes"
    (out / MARKER_MD).write_text(_marker_text(marker).replace("LLaVA-OneVision", family), encoding="utf-8")
    _write_json(out / MARKER_JSON, marker)
    return out
