"""Train adatp-tiny's projector and relevance scorer on the needle-in-video train split.

What is trained (everything else stays frozen and pretrained):
- the multimodal projector (Linear 384->576, GELU, Linear 576->576) and the newline embedding, with
  the next-token loss on the answer letter of needle questions (the prompt ends where the model
  must answer: "Answer with the option's letter ... directly.");
- the relevance scorer (:class:`adatp.relevance.trained.TextFrameScorer`): question tokens -> the
  DINOv2 class-token space; frames are ranked by cosine, trained so that the frames holding the
  asked event rank first (softmax over the clip's frames, target spread over the event frames).

Reproducible bit for bit from the seed on one machine type: items come from the seeded generator in
a fixed order, the projector starts from the base model's seeded weights, torch runs deterministic
algorithms with a fixed thread count, and no data-dependent randomness is drawn elsewhere.
Only the train split is read; validation is for choosing settings; test is never touched here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError

LETTERS = "ABCD"


@dataclass
class TrainConfig:
    """Settings of ``adatp organism train`` (the shipped weights used the defaults)."""

    seed: int = 0
    steps: int = 480  # training items seen by the projector, one per step (batch 1)
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    threads: int = 2
    scorer_text_dim: int = 32
    scorer_epochs: int = 300
    scorer_lr: float = 3e-3
    start_index: int = 0  # first train-split item

    def __post_init__(self) -> None:
        if self.steps < 1 or self.threads < 1 or self.scorer_epochs < 0:
            raise ConfigError("steps and threads must be >= 1, scorer_epochs >= 0")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}")


def letter_token_ids(tokenizer) -> list[int]:
    """The token of each option letter A-D as the model would write it first (no leading space)."""
    ids = []
    for letter in LETTERS:
        enc = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ConfigError(f"the tokenizer splits the option letter {letter!r} into {len(enc)} tokens")
        ids.append(enc[0])
    return ids


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The projector and the newline embedding, by their names in the model's state dict."""
    names = {}
    for name, p in model.named_parameters():
        if name.startswith("model.multi_modal_projector.") or name == "model.image_newline":
            names[name] = p
    if not names:
        raise ConfigError("the model has no multi_modal_projector to train")
    return names


def train_projector(model, model_dir: Path, cfg: TrainConfig, log: Callable[[dict], None] | None = None):
    """Train the projector in place; returns per-item (question ids, CLS features, event-frame mask)
    gathered on the way for the scorer."""
    from adatp.eval.needle import make_item
    from adatp.inputs import prepare_inputs

    tokenizer_dir = model_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    letters = letter_token_ids(tokenizer)
    params = trainable_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    captured: dict[str, torch.Tensor] = {}
    layer = model.config.vision_feature_layer

    def grab_cls(module, args, output):
        captured["cls"] = output.hidden_states[layer][:, 0].detach()

    hook = model.model.vision_tower.register_forward_hook(grab_cls)
    scorer_data = []
    model.train(False)  # no dropout anywhere; gradients still flow
    try:
        for step in range(cfg.steps):
            t0 = time.perf_counter()
            item = make_item("train", cfg.start_index + step)
            inputs = prepare_inputs(model_dir, item.frames, item.prompt())
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            out = model(**inputs, use_cache=False, logits_to_keep=1)
            logits = out.logits[0, -1].float()
            target = torch.tensor(letters[item.answer])
            loss = F.cross_entropy(logits[None], target[None])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params.values(), cfg.grad_clip)
            opt.step()
            option_logits = logits[letters[: len(item.choices)]]
            correct = int(option_logits.argmax()) == item.answer
            mask = torch.zeros(item.frames.shape[0], dtype=torch.bool)
            for event in item.events:
                mask[list(event.frames)] = True
            question_ids = tokenizer(item.question, add_special_tokens=False)["input_ids"]
            scorer_data.append((question_ids, captured["cls"].float().cpu(), mask, item.kind))
            if log:
                log({"step": step, "kind": item.kind, "loss": float(loss), "correct": correct,
                     "lr": _lr_at(step, cfg), "seconds": time.perf_counter() - t0})
    finally:
        hook.remove()
        for p in params.values():
            p.requires_grad_(False)
    return scorer_data


def train_scorer(scorer_data, vocab_size: int, feature_dim: int, cfg: TrainConfig, log=None):
    """Fit the TextFrameScorer: softmax over each clip's frames of s * cos(text, frame) should put
    its mass on the frames that hold an event (full-batch Adam, deterministic)."""
    from adatp.relevance.trained import TextFrameScorer

    torch.manual_seed(cfg.seed)
    scorer = TextFrameScorer(vocab_size, cfg.scorer_text_dim, feature_dim)
    scale = torch.nn.Parameter(torch.tensor(10.0))
    opt = torch.optim.Adam([*scorer.parameters(), scale], lr=cfg.scorer_lr)
    ids = torch.tensor([t for q, *_ in scorer_data for t in q])
    offsets = torch.tensor([0] + [len(q) for q, *_ in scorer_data][:-1]).cumsum(0)
    cls = torch.stack([c for _, c, _, _ in scorer_data])  # (B, T, d)
    masks = torch.stack([m for _, _, m, _ in scorer_data]).float()  # (B, T)
    target = masks / masks.sum(1, keepdim=True)
    for epoch in range(cfg.scorer_epochs):
        text = F.normalize(scorer.text_features(ids, offsets), dim=-1)  # (B, d)
        frames = F.normalize(scorer.frame_features(cls), dim=-1)  # (B, T, d)
        logits = scale * torch.einsum("bd,btd->bt", text, frames)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log and (epoch % 50 == 0 or epoch == cfg.scorer_epochs - 1):
            top = logits.argmax(1)
            hit = masks.gather(1, top[:, None]).mean()
            log({"scorer_epoch": epoch, "loss": float(loss), "top_frame_is_event": float(hit)})
    return scorer.eval()


def train(model_dir: str | Path, out_dir: str | Path, cfg: TrainConfig | None = None,
          log: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train on ``model_dir`` (a LLaVA-OneVision directory, normally adatp-tiny-base) and write
    ``adatp_tiny_trained.safetensors`` (projector, newline, ``relevance.*``) and ``relevance.json``
    and ``train_config.json`` into ``out_dir``. Returns a summary."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    cfg = cfg or TrainConfig()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    t0 = time.perf_counter()
    scorer_data = train_projector(model, model_dir, cfg, log)
    projector_s = time.perf_counter() - t0
    vocab = len(AutoTokenizer.from_pretrained(model_dir))
    feature_dim = model.config.vision_config.hidden_size
    scorer = train_scorer(scorer_data, vocab, feature_dim, cfg, log) if cfg.scorer_epochs else None
    tensors = {name: p.detach().clone().contiguous() for name, p in trainable_parameters(model).items()}
    if scorer is not None:
        for name, value in scorer.state_dict().items():
            # fp16 embedding table keeps the shipped file small; it is loaded back into fp32.
            keep = value.half() if name == "token_embedding.weight" else value
            tensors[f"relevance.{name}"] = keep.contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / "adatp_tiny_trained.safetensors")
    if scorer is not None:
        (out_dir / "relevance.json").write_text(json.dumps(scorer.sizes, indent=2) + "\n")
    summary = {"config": asdict(cfg), "projector_seconds": round(projector_s, 1),
               "total_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__}
    (out_dir / "train_config.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@torch.no_grad()
def calibrate_segment_threshold(model_dir: str | Path, clips: int = 30, percentile: float = 10.0) -> dict[str, Any]:
    """tau_s for this model's tower (DECISIONS D6), from the train split only: the ``percentile``-th
    percentile of adjacent-frame cosine similarity of the class tokens over ``clips`` train clips
    (every other item, as adatp-tiny's 0.92 was measured)."""
    import numpy as np
    from transformers import LlavaOnevisionForConditionalGeneration

    from adatp.eval.needle import make_item
    from adatp.video.preprocess import load_preprocess_config, preprocess_frames

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir).eval()
    tower, layer = model.model.vision_tower, model.config.vision_feature_layer
    cfg = load_preprocess_config(model_dir)
    sims = []
    for i in range(0, 2 * clips, 2):
        cls = tower(preprocess_frames(make_item("train", i).frames, cfg), output_hidden_states=True).hidden_states[layer][:, 0]
        cls = F.normalize(cls.float(), dim=-1)
        sims.append((cls[:-1] * cls[1:]).sum(-1))
    values = torch.cat(sims).numpy()
    return {"threshold": float(np.percentile(values, percentile)), "percentile": percentile,
            "pairs": int(values.size), "quantiles": {q: round(float(np.percentile(values, q)), 4) for q in (5, 10, 20, 50)}}
