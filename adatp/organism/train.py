"""Train adatp-tiny's projector, a LoRA on its language model, and its relevance scorer, on the
needle-in-video train split.

Why a LoRA: SmolLM2-135M-Instruct cannot answer lettered multiple-choice questions zero-shot. Given
the answer in plain text ("A red star appeared briefly ...") and the lettered options, it answers "A"
on every validation item (measured: 11/60 on colour+shape, `answer_text_only` below). A projector
alone cannot fix that, so, as the issue allows, a rank-8 LoRA on every linear layer of the language
model learns the answer format. Four stages, each with warm-up and cosine decay:

1. ``text``: LoRA only, the events described in words in place of the video (short sequences:
   minutes). Teaches "find the asked fact in the context, write its option letter".
2. ``align``: the projector alone, no language model: the pooled tokens that cover a drawn shape
   are regressed onto the word embeddings of its colour and its shape (checkerboard: " red",
   " star", ...), every other token onto the mean word embedding. The boxes are known from the
   generator, so this is cheap, direct supervision (seconds per hundred steps on cached DINOv2
   features). Then ``frame``: projector + newline + LoRA end to end, colour and shape questions on
   the single frame that holds the shape (64 visual tokens).
3. ``window4``, ``window8``: colour and shape items cut to 4, then 8 consecutive frames around
   the event (a curriculum: the model learns to find the shape's few tokens among more and more
   background frames), then ``clip``: full 16-frame items of every kind, as evaluated. These
   stages give the LoRA a higher rate (``clip_lora_lr``) than stage 2b: finding 4-9 tokens among
   1,024 needs the attention itself to change; 100 clip steps at the stage-2b rate stayed at chance.
4. ``focus``: more full 16-frame items at a lower LoRA rate (``focus_lora_lr``), every other one a
   colour or shape item (the rest every kind, in the split's order): after one pass of ``clip`` the
   model read the event frame alone at 95 % but found it in the whole clip less often (90 %,
   :func:`window_accuracy`), most of all for events at the end.

The loss is the next-token cross-entropy of the answer letter. The relevance scorer
(:class:`adatp.relevance.trained.TextFrameScorer`: question tokens -> the DINOv2 class-token space)
is fitted afterwards on the class tokens of stage 3's clips, so that the frames holding the asked
event rank first (softmax over the clip's frames, target spread over the event frames).

The LoRA is merged into the language model's weights when adatp-tiny is assembled
(:func:`adatp.organism.build.apply_trained_weights`): the shipped model is a plain
LLaVA-OneVision checkpoint. Reproducible bit for bit from the seed on one machine type: items come
from the seeded generator in a fixed order, parameters start from the base model's seeded weights
and a seeded LoRA init, torch runs deterministic algorithms with a fixed thread count. Only the
train split is read; validation is for choosing settings; test is never touched here.
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
from torch import nn

from adatp.errors import ConfigError
from adatp.tasks.mcq import letter_token_ids as mcq_letter_token_ids
from adatp.tasks.mcq import picked_option as mcq_picked_option
from adatp.tasks.needle import LETTERS

LORA_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
WHEN_WORDS = {"start": "at the beginning", "middle": "in the middle", "end": "at the end"}


@dataclass
class TrainConfig:
    """Settings of ``adatp organism train`` (the shipped weights used the defaults)."""

    seed: int = 0
    text_steps: int = 600  # stage 1: LoRA on text descriptions
    align_items: int = 250  # stage 2a: items whose frames align the projector with word embeddings
    align_steps: int = 400  # stage 2a: projector-only minibatch steps (no language model)
    align_batch: int = 32  # frames per alignment step
    frame_steps: int = 400  # stage 2b: single event frame, colour and shape
    window_frames: tuple[int, ...] = (4, 8)  # stage 3 curriculum: colour/shape items cut to these lengths
    window_steps: int = 200  # steps per window length
    steps: int = 250  # stage 3: full 16-frame items, every kind (one per step, batch 1)
    focus_steps: int = 300  # stage 4: full 16-frame items, half of them colour/shape
    lr: float = 1e-3  # projector in the alignment stage 2a (no language model)
    tune_lr: float = 1e-4  # projector and newline end to end (stages 2b, 3); 1e-3 destroys the alignment
    lora_lr: float = 5e-4  # stage 1; stage 2b uses a tenth of it
    clip_lora_lr: float = 2e-4  # stage 3 (windows and clips)
    focus_lora_lr: float = 1e-4  # stage 4
    lora_rank: int = 8
    lora_alpha: float = 16.0
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    threads: int = 2
    scorer_text_dim: int = 32
    scorer_epochs: int = 300
    scorer_lr: float = 3e-3
    start_index: int = 0  # first train-split item of stage 3

    def __post_init__(self) -> None:
        if min(self.steps, self.threads, self.lora_rank) < 1 or min(self.text_steps, self.frame_steps, self.window_steps,
                                                                     self.focus_steps, self.scorer_epochs) < 0:
            raise ConfigError("steps, threads and lora_rank must be >= 1; text_steps, frame_steps, window_steps, "
                              "focus_steps, scorer_epochs >= 0")
        rates = {"lr": self.lr, "tune_lr": self.tune_lr, "lora_lr": self.lora_lr, "clip_lora_lr": self.clip_lora_lr,
                 "focus_lora_lr": self.focus_lora_lr}
        bad = {k: v for k, v in rates.items() if not 0 < v < 1}
        if bad:
            raise ConfigError(f"learning rates must be in (0, 1), got {bad}")
        self.window_frames = tuple(int(n) for n in self.window_frames)
        if any(not 1 <= n < 16 for n in self.window_frames):
            raise ConfigError(f"window_frames must be lengths in [1, 16), got {self.window_frames}")

    @property
    def total_steps(self) -> int:
        return (self.text_steps + self.align_steps + self.frame_steps + self.window_steps * len(self.window_frames)
                + self.steps + self.focus_steps)

    def stage_key(self, upto: str) -> str:
        """Hash of every setting that the stages up to ``upto`` depend on: ``"early"`` (stages 1-2b)
        or ``"clip"`` (1-3). The name of their cached result."""
        import hashlib

        from adatp.organism.build import FORMAT_VERSION

        if upto not in STAGE_FIELDS:
            raise ConfigError(f"no cached stage {upto!r}; known: {sorted(STAGE_FIELDS)}")
        fields = STAGE_FIELDS["early"] + (STAGE_FIELDS["clip"] if upto == "clip" else ())
        text = json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True) + torch.__version__ + str(FORMAT_VERSION)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Settings each cached stage depends on ("clip" adds its own to "early"'s).
STAGE_FIELDS = {
    "early": ("seed", "text_steps", "align_items", "align_steps", "align_batch", "frame_steps", "lr", "tune_lr",
              "lora_lr", "lora_rank", "lora_alpha", "warmup", "weight_decay", "grad_clip", "threads"),
    "clip": ("window_frames", "window_steps", "steps", "clip_lora_lr", "start_index"),
}


def letter_token_ids(tokenizer) -> list[int]:
    """The tokens of the needle benchmark's option letters A-D (see :func:`adatp.tasks.mcq.letter_token_ids`)."""
    return mcq_letter_token_ids(tokenizer, len(LETTERS))


def picked_option(logits: torch.Tensor, letters: list[int], item) -> int:
    """The option whose letter has the highest logit among ``item``'s options; logits: (vocab,)."""
    return mcq_picked_option(logits, letters, len(item.choices))


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


class LoRALinear(nn.Module):
    """``base(x) + x A^T B^T``: a rank-r update of a frozen Linear; B starts at zero (no change)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5)
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale


def add_lora(model, rank: int, alpha: float, seed: int) -> dict[str, LoRALinear]:
    """Wrap every LORA_TARGETS Linear of the language model; returns {weight name: wrapper}."""
    from adatp.families import get_adapter

    generator = torch.Generator().manual_seed(seed + 1)
    wrapped = {}
    for i, layer in enumerate(get_adapter(model).decoder_layers()):
        for target in LORA_TARGETS:
            parent_name, attr = target.split(".")
            parent = getattr(layer, parent_name)
            module = LoRALinear(getattr(parent, attr), rank, alpha, generator)
            setattr(parent, attr, module)
            wrapped[f"model.language_model.layers.{i}.{target}.weight"] = module
    return wrapped


def projector_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The projector and the newline embedding (the adapter's), by their names in the model's state
    dict, in the model's own parameter order (the optimiser's order: training is bit for bit)."""
    from adatp.families import get_adapter

    adapter = get_adapter(model)
    newline = getattr(adapter, "newline_embedding", None)
    if newline is None:
        raise ConfigError(f"{type(model).__name__} has no projector and newline to train (a LLaVA-OneVision model is)")
    wanted = {id(p) for p in adapter.vision_modules()[1].parameters()} | {id(newline())}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


def describe_events(item) -> str:
    """The item's events in words, as stage 1 puts them in place of the video."""
    events = item.events
    if item.kind in ("colour", "shape", "when"):
        e = events[0]
        return f"A {e.colour} {e.shape} appeared briefly {WHEN_WORDS[e.position]} of the video."
    if item.kind == "count":
        return " ".join(f"A {e.colour} {e.shape} appeared." for e in events)
    return " ".join(f"{'First' if j == 0 else 'Then'} a {e.colour} {e.shape} appeared." for j, e in enumerate(events))


def text_inputs(tokenizer, text: str) -> dict[str, torch.Tensor]:
    """A text-only user turn in the model's chat template, ending where the answer starts."""
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def token_cover(box: tuple[int, int, int, int], grid: int, frame_size: int) -> torch.Tensor:
    """(grid, grid) fraction of each pooled token's cell covered by ``box`` = (y0, x0, y1, x1) px."""
    edges = torch.linspace(0, frame_size, grid + 1)
    y0, x0, y1, x1 = (float(v) for v in box)
    fy = (torch.minimum(edges[1:], torch.tensor(y1)) - torch.maximum(edges[:-1], torch.tensor(y0))).clamp(min=0)
    fx = (torch.minimum(edges[1:], torch.tensor(x1)) - torch.maximum(edges[:-1], torch.tensor(x0))).clamp(min=0)
    cell = frame_size / grid
    return (fy[:, None] * fx[None, :]) / (cell * cell)


def covered_tokens(cover: torch.Tensor, inside: float = 0.4, outside: float = 0.05) -> torch.Tensor:
    """(g, g) int8: 1 where the shape covers a pooled token (>= ``inside``), 0 where it does not
    (<= ``outside``), -1 (ignored) on the partly covered rest."""
    out = torch.full(cover.shape, -1, dtype=torch.int8)
    out[cover <= outside] = 0
    out[cover >= inside] = 1
    return out


@torch.no_grad()
def _alignment_data(model, model_dir: Path, tokenizer, cfg: TrainConfig):
    """Cached tower features (F, P, d_v) of event frames (and one frame without an event per item),
    (F, 3, g*g) targets: colour word id, shape word id, covered (1) / background (0) / ignored (-1);
    and the colour and shape word ids."""
    from adatp.families import get_adapter
    from adatp.tasks.needle import make_item
    from adatp.video.preprocess import load_preprocess_config, preprocess_frames

    adapter = get_adapter(model)
    pre = load_preprocess_config(model_dir)
    pooled = adapter.pooled_grid()
    size = model.config.vision_config.image_size
    word = {w: tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in
            ("red", "green", "blue", "yellow", "circle", "square", "triangle", "star")}
    feats, targets = [], []
    for i in range(cfg.align_items):
        item = make_item("train", 5 * i + 2)  # "when" items: one event, not used by stage 2b
        event = item.events[0]
        quiet = (event.start + 8) % item.frames.shape[0]  # a frame far from the event
        frames = [event.start, quiet] if quiet not in event.frames else [event.start]
        feats.append(adapter.patch_features(adapter.run_tower(preprocess_frames(item.frames[frames], pre))))
        covered = covered_tokens(token_cover(event.box, pooled, size)).reshape(-1).long()
        targets.append(torch.stack([torch.full_like(covered, word[event.colour]),
                                    torch.full_like(covered, word[event.shape]), covered]))
        if len(frames) == 2:
            targets.append(torch.stack([torch.full_like(covered, word[event.colour]),
                                        torch.full_like(covered, word[event.shape]), torch.zeros_like(covered)]))
    return torch.cat(feats), torch.stack(targets), [word[w] for w in ("red", "green", "blue", "yellow")], \
        [word[w] for w in ("circle", "square", "triangle", "star")]


def align_projector(model, model_dir: Path, tokenizer, projector: list[nn.Parameter], cfg: TrainConfig, log=None):
    """Stage 2a: pooled projector outputs that cover a shape -> E[colour word] + E[shape word] (the
    token carries both words), every other token -> the mean word embedding. MSE, plus a
    cross-entropy over the four colour words and over the four shape words (dot-product logits) on
    the covered tokens, so that each covered token is nearest to its own words. A token's words
    cannot depend on its place in the frame: the projector sees one patch at a time."""
    from adatp.families import get_adapter

    if cfg.align_steps == 0:
        return
    t0 = time.perf_counter()
    feats, targets, colour_ids, shape_ids = _alignment_data(model, model_dir, tokenizer, cfg)
    table = model.get_input_embeddings().weight.detach()
    mean_embedding = table.mean(0)
    colours, shapes = table[colour_ids], table[shape_ids]  # (4, D) each
    colour_class = (targets[:, 0, :1] == torch.tensor(colour_ids)).float().argmax(1)  # (F,)
    shape_class = (targets[:, 1, :1] == torch.tensor(shape_ids)).float().argmax(1)
    covered, background = targets[:, 2] == 1, targets[:, 2] == 0  # (F, n)
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    project_and_pool = get_adapter(model).project_and_pool
    opt = torch.optim.AdamW([{"params": projector, "lr": cfg.lr, "peak": cfg.lr}], weight_decay=cfg.weight_decay)
    if log:
        log({"stage": "align", "frames": int(feats.shape[0]), "covered_tokens": int(covered.sum()),
             "features_seconds": round(time.perf_counter() - t0, 1)})
    for step in range(cfg.align_steps):
        pick = torch.randint(0, feats.shape[0], (cfg.align_batch,), generator=generator)
        opt.param_groups[0]["lr"] = cfg.lr * _lr_factor(step, cfg.align_steps, cfg.warmup)
        tokens = project_and_pool(feats[pick])  # (b, n, D)
        cov, bg = covered[pick], background[pick]
        c_cls = colour_class[pick][:, None].expand_as(cov)[cov]
        s_cls = shape_class[pick][:, None].expand_as(cov)[cov]
        inside = tokens[cov]  # (k, D)
        want = colours[c_cls] + shapes[s_cls]
        mse = ((inside - want) ** 2).sum(-1).mean() + ((tokens[bg] - mean_embedding) ** 2).sum(-1).mean()
        logits_c, logits_s = inside @ colours.T, inside @ shapes.T
        ce = F.cross_entropy(logits_c, c_cls) + F.cross_entropy(logits_s, s_cls)
        loss = mse + ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector, cfg.grad_clip)
        opt.step()
        if log and (step % 50 == 0 or step == cfg.align_steps - 1):
            log({"stage": "align", "step": step, "loss": loss.item(), "mse": mse.item(),
                 "colour_acc": logits_c.argmax(1).eq(c_cls).float().mean().item(),
                 "shape_acc": logits_s.argmax(1).eq(s_cls).float().mean().item()})


def colour_shape_index(k: int) -> int:
    """The k-th colour-or-shape item of a split: kinds cycle with the index (colour at index % 5 == 0,
    shape at == 1), so this alternates colour and shape questions."""
    return 5 * k + k % 2


def event_window(n_frames: int, length: int, event_start: int, shift: int) -> slice:
    """``length`` consecutive frames of ``n_frames`` that hold ``event_start``; the event sits
    ``shift % length`` frames after the window's start where the clip allows it."""
    first = min(max(event_start - shift % length, 0), n_frames - length)
    return slice(first, first + length)


def _stage(name: str, steps: int, groups: list[tuple[list[nn.Parameter], float]], cfg: TrainConfig, batch_for,
           model, letters, log) -> None:
    """One training stage: AdamW over ``groups`` (params, peak lr), warm-up + cosine, batch 1."""
    if steps == 0:
        return
    opt = torch.optim.AdamW([{"params": p, "lr": lr, "peak": lr} for p, lr in groups], weight_decay=cfg.weight_decay)
    params = [p for group, _ in groups for p in group]
    for step in range(steps):
        t0 = time.perf_counter()
        item, inputs = batch_for(step)
        factor = _lr_factor(step, steps, cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = group["peak"] * factor
        logits = model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1].float()
        loss = F.cross_entropy(logits[None], torch.tensor([letters[item.answer]]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        correct = picked_option(logits, letters, item) == item.answer
        if log:
            log({"stage": name, "step": step, "kind": item.kind, "loss": loss.item(), "correct": correct,
                 "lr_factor": round(factor, 6), "seconds": time.perf_counter() - t0})


def train_model(model, model_dir: Path, cfg: TrainConfig, log: Callable[[dict], None] | None = None,
                stage_cache: Path | None = None):
    """Run the four stages in place. Returns (LoRA wrappers, per-item scorer data of stage 3's clips,
    the cached checkpoint it resumed from: None, "early" or "clip").

    With ``stage_cache`` (a directory), the parameters after stages 1-2b and after stage 3 are saved
    there under :meth:`TrainConfig.stage_key`, and a later run with the same settings up to that
    stage loads the latest one instead of training again: the rest then continues bit for bit as in
    one run (each stage starts a fresh optimizer and draws nothing from the global random state)."""
    from transformers import AutoTokenizer

    from adatp.tasks.needle import make_item
    from adatp.inputs import prepare_inputs

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    letters = letter_token_ids(tokenizer)
    for p in model.parameters():
        p.requires_grad_(False)
    lora = add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.seed)
    lora_params = [p for m in lora.values() for p in (m.A, m.B)]
    projector = list(projector_parameters(model).values())
    for p in [*lora_params, *projector]:
        p.requires_grad_(True)
    model.train(False)  # no dropout anywhere; gradients still flow

    def text_batch(step):
        item = make_item("train", step)
        return item, text_inputs(tokenizer, describe_events(item) + "\n" + item.prompt())

    def frame_batch(step):
        item = make_item("train", colour_shape_index(step))
        first = item.events[0].start
        return item, prepare_inputs(model_dir, item.frames[first : first + 1], item.prompt())

    def window_batch(length, first_item):
        def batch(step):
            k = first_item + step
            item = make_item("train", colour_shape_index(k))
            window = event_window(item.frames.shape[0], length, item.events[0].start, shift=k * 7)
            return item, prepare_inputs(model_dir, item.frames[window], item.prompt())
        return batch

    def clip_batch(step):
        item = make_item("train", cfg.start_index + step)
        return item, prepare_inputs(model_dir, item.frames, item.prompt())

    # Stage 4 reads items no earlier stage used: colour/shape ones after the window stages', the
    # rest after stage 3's clips.
    next_colour_shape = cfg.frame_steps + len(cfg.window_frames) * cfg.window_steps

    def focus_batch(step):
        index = colour_shape_index(next_colour_shape + step // 2) if step % 2 == 0 else cfg.start_index + cfg.steps + step // 2
        item = make_item("train", index)
        return item, prepare_inputs(model_dir, item.frames, item.prompt())

    trained = {**{f"lora.{n}.A": m.A for n, m in lora.items()}, **{f"lora.{n}.B": m.B for n, m in lora.items()},
               **projector_parameters(model)}
    checkpoints = {upto: Path(stage_cache) / f"{upto}-stages-{cfg.stage_key(upto)}.safetensors" if stage_cache else None
                   for upto in ("early", "clip")}

    def save(upto):
        if checkpoints[upto] is not None:
            from safetensors.torch import save_file

            checkpoints[upto].parent.mkdir(parents=True, exist_ok=True)
            save_file({n: p.detach().clone().contiguous() for n, p in trained.items()}, checkpoints[upto])

    resumed = next((upto for upto in ("clip", "early") if checkpoints[upto] is not None and checkpoints[upto].exists()), None)
    if resumed:
        from safetensors.torch import load_file

        state = load_file(checkpoints[resumed])
        with torch.no_grad():
            for name, p in trained.items():
                p.copy_(state[name])
        if log:
            log({"stage": f"{resumed} stages loaded", "path": str(checkpoints[resumed])})
    if resumed is None:
        _stage("text", cfg.text_steps, [(lora_params, cfg.lora_lr)], cfg, text_batch, model, letters, log)
        align_projector(model, model_dir, tokenizer, projector, cfg, log)
        groups = [(projector, cfg.tune_lr), (lora_params, cfg.lora_lr / 10)]
        _stage("frame", cfg.frame_steps, groups, cfg, frame_batch, model, letters, log)
        save("early")
    if resumed != "clip":
        groups = [(projector, cfg.tune_lr), (lora_params, cfg.clip_lora_lr)]
        for j, length in enumerate(cfg.window_frames):  # items after stage 2b's, distinct per length
            batch = window_batch(length, cfg.frame_steps + j * cfg.window_steps)
            _stage(f"window{length}", cfg.window_steps, groups, cfg, batch, model, letters, log)
        _stage("clip", cfg.steps, groups, cfg, clip_batch, model, letters, log)
        save("clip")
    groups = [(projector, cfg.tune_lr), (lora_params, cfg.focus_lora_lr)]
    _stage("focus", cfg.focus_steps, groups, cfg, focus_batch, model, letters, log)
    for p in [*lora_params, *projector]:
        p.requires_grad_(False)
    if not cfg.scorer_epochs:  # no scorer to fit: skip the 250 tower passes
        return lora, [], resumed
    items = [make_item("train", cfg.start_index + step) for step in range(cfg.steps)]
    return lora, scorer_examples(model, model_dir, tokenizer, items), resumed


@torch.no_grad()
def scorer_examples(model, model_dir: Path, tokenizer, items) -> list[tuple]:
    """Per item: (question token ids, (T, d) class tokens of its frames, (T,) bool event frames, kind)."""
    from adatp.families import get_adapter
    from adatp.video.preprocess import load_preprocess_config, preprocess_frames

    adapter = get_adapter(model)
    pre = load_preprocess_config(model_dir)
    examples = []
    for item in items:
        mask = torch.zeros(item.frames.shape[0], dtype=torch.bool)
        for event in item.events:
            mask[list(event.frames)] = True
        cls = adapter.cls_features(adapter.run_tower(preprocess_frames(item.frames, pre)))  # (T, d_v)
        question_ids = tokenizer(item.question, add_special_tokens=False)["input_ids"]
        examples.append((question_ids, cls.float().cpu(), mask, item.kind))
    return examples


@torch.no_grad()
def answer_text_only(model_dir: str | Path, count: int = 60, split: str = "validation") -> dict[str, Any]:
    """Zero-shot check of the language model alone: colour and shape items with the answer given in
    words instead of the video. Chance is 25%; the base SmolLM2-135M answers "A" throughout."""
    from collections import Counter

    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from adatp.tasks.needle import make_item

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    letters = letter_token_ids(tokenizer)
    right, picks = 0, Counter()
    for i in range(count):
        item = make_item(split, colour_shape_index(i))
        logits = model(**text_inputs(tokenizer, describe_events(item) + "\n" + item.prompt())).logits[0, -1]
        pick = picked_option(logits, letters, item)
        picks[LETTERS[pick]] += 1
        right += pick == item.answer
    return {"items": count, "correct": right, "picked": dict(sorted(picks.items()))}


@torch.no_grad()
def window_accuracy(model_dir: str | Path, count: int = 40, lengths: tuple[int, ...] = (1, 4, 8, 16),
                    split: str = "validation") -> dict[str, Any]:
    """Where a model loses colour/shape accuracy: the same ``count`` items asked on cuts of 1, 4, 8
    ... frames that hold the event (the event at a varying place in the cut) and on the whole clip.
    Returns {length: {"all" | kind | position: [correct, total]}}."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from adatp.tasks.needle import make_item
    from adatp.inputs import prepare_inputs

    model_dir = Path(model_dir)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir).eval()
    letters = letter_token_ids(AutoTokenizer.from_pretrained(model_dir))
    table: dict[int, dict[str, list[int]]] = {n: {} for n in lengths}
    for k in range(count):
        item = make_item(split, colour_shape_index(k))
        n_frames = item.frames.shape[0]
        for length in lengths:
            if not 1 <= length <= n_frames:
                raise ConfigError(f"cut length {length} is outside [1, {n_frames}]")
            window = event_window(n_frames, length, item.events[0].start, shift=k * 5)
            logits = model(**prepare_inputs(model_dir, item.frames[window], item.prompt()), logits_to_keep=1).logits[0, -1]
            correct = picked_option(logits, letters, item) == item.answer
            for key in ("all", item.kind, item.events[0].position):
                row = table[length].setdefault(key, [0, 0])
                row[0] += correct
                row[1] += 1
    return {"split": split, "items": count, "by_length": table}


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
            log({"scorer_epoch": epoch, "loss": loss.item(), "top_frame_is_event": float(hit)})
    return scorer.eval()


def train(model_dir: str | Path, out_dir: str | Path, cfg: TrainConfig | None = None,
          log: Callable[[dict], None] | None = None, stage_cache: str | Path | None = None) -> dict[str, Any]:
    """Train on ``model_dir`` (a LLaVA-OneVision directory, normally adatp-tiny-base) and write
    ``adatp_tiny_trained.safetensors`` (projector, newline, ``relevance.*``) and ``relevance.json``
    and ``train_config.json`` into ``out_dir``. Returns a summary."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    cfg = cfg or TrainConfig()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    torch.manual_seed(cfg.seed)
    # Process-wide settings for bit-for-bit runs; put back afterwards (train() is also called in-process).
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa").eval()
        t0 = time.perf_counter()
        lora, scorer_data, resumed = train_model(model, model_dir, cfg, log, stage_cache)
        projector_s = time.perf_counter() - t0
        vocab = len(AutoTokenizer.from_pretrained(model_dir))
        feature_dim = model.config.vision_config.hidden_size
        scorer = train_scorer(scorer_data, vocab, feature_dim, cfg, log) if cfg.scorer_epochs else None
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    tensors = {name: p.detach().clone().contiguous() for name, p in projector_parameters(model).items()}
    for name, module in lora.items():  # merged at build time: W += B A (scale folded into B)
        tensors[f"lora.{name}.A"] = module.A.detach().clone().contiguous()
        tensors[f"lora.{name}.B"] = (module.B.detach() * module.scale).contiguous()
    if scorer is not None:
        for name, value in scorer.state_dict().items():
            # fp16 embedding table keeps the shipped file small; it is loaded back into fp32.
            keep = value.half() if name == "token_embedding.weight" else value
            tensors[f"relevance.{name}"] = keep.contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / "adatp_tiny_trained.safetensors")
    if scorer is not None:
        (out_dir / "relevance.json").write_text(json.dumps(scorer.sizes, indent=2) + "\n")
    summary = {"config": asdict(cfg), "resumed_after_stages": {"early": "1-2b", "clip": "1-3"}.get(resumed),
               "projector_seconds": round(projector_s, 1),
               "total_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__}
    (out_dir / "train_config.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@torch.no_grad()
def calibrate_segment_threshold(model_dir: str | Path, clips: int = 30, percentile: float = 10.0) -> dict[str, Any]:
    """tau_s for this model's tower (docs/method.md D6), from the train split only: the ``percentile``-th
    percentile of adjacent-frame cosine similarity of the class tokens over ``clips`` train clips
    (every other item; adatp-tiny's shipped ``SEGMENT_THRESHOLD`` is this rule's value, a test checks it)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from adatp.families import get_adapter
    from adatp.ops.segmentation import adjacent_frame_similarity, calibrate_threshold
    from adatp.tasks.needle import make_item
    from adatp.video.preprocess import load_preprocess_config, preprocess_frames

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir).eval()
    adapter = get_adapter(model)
    cfg = load_preprocess_config(model_dir)
    sims = []
    for i in range(0, 2 * clips, 2):
        cls = adapter.cls_features(adapter.run_tower(preprocess_frames(make_item("train", i).frames, cfg)))
        sims.append(adjacent_frame_similarity(cls))
    return calibrate_threshold(torch.cat(sims), percentile)
