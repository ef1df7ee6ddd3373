"""Timestamps taken inside one forward by hooks: where a benchmark's per-stage times come from.

``time.perf_counter`` on CPU; CUDA events recorded in the hooks on GPU (no host sync inside the
forward; one synchronize after it). The hooks go where the adapter says the stages are: the vision
tower's entry and exit, the exit of the module that outputs the video tokens, and the language
model's boundary.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn


class Marks:
    """Named timestamps taken in hooks, armed for one forward at a time.

    Each name keeps its first timestamp only (the language model runs once per prefill). On CUDA a
    mark is an event recorded on the current stream: no synchronisation inside the forward.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.armed = False
        self.stamps: dict[str, Any] = {}

    def arm(self) -> None:
        self.stamps = {}
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def mark(self, name: str, force: bool = False) -> None:
        if not (self.armed or force) or name in self.stamps:
            return
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.stamps[name] = ev
        else:
            self.stamps[name] = time.perf_counter()

    def elapsed(self, a: str, b: str) -> float | None:
        if a not in self.stamps or b not in self.stamps:
            return None
        if self.cuda:
            return self.stamps[a].elapsed_time(self.stamps[b]) / 1000.0
        return self.stamps[b] - self.stamps[a]

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def install_marks(model: nn.Module, marks: Marks) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks at the vision tower's entry and exit, the video tokens' exit and the language model boundary.

    ``vision_end`` marks the exit of the module whose output is the projected video tokens (LLaVA:
    the projector; Qwen-VL: the merger, inside the tower). ``tower_end`` marks the tower's own exit:
    with the tower's output reused (``--encode-once``) a merger inside it never runs, so the vision
    stage ends there. The language model pre-hook is prepended, so it runs before adatp's (which
    prunes there): the LLM time includes every pruning stage on the LLM path. Nothing else is touched.
    """
    from adatp.families import get_adapter

    adapter = get_adapter(model)
    tower, projected = adapter.vision_modules()
    lm = adapter.language_model()
    return [
        tower.register_forward_pre_hook(lambda m, a: marks.mark("vision_start"), prepend=True),
        tower.register_forward_hook(lambda m, a, o: marks.mark("tower_end"), prepend=True),
        projected.register_forward_hook(lambda m, a, o: marks.mark("vision_end")),
        lm.register_forward_pre_hook(lambda m, a: marks.mark("llm_start"), prepend=True),
        lm.register_forward_hook(lambda m, a, o: marks.mark("llm_end")),
    ]
