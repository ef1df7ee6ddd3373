"""Encode once: the vision tower runs once per video when several runs ask about the same one.

An evaluation answers each item with every (method, target): the video tokens differ between runs
only *after* the vision tower, so its output can be reused. :func:`reuse_outputs` replaces the
tower's ``forward`` on this one instance for the duration of a block: a call with the same input
tensors (same storage, shape, strides, dtype and in-place version; small integer grids by value; same
other arguments) returns
the first call's output object. Hooks on the tower still run on every call (``nn.Module.__call__``
wraps the instance's ``forward``), so the pruning runtime sees the same features as without the
cache, and results are bit-identical. Only the last input is remembered (one video at a time).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


#: integer tensors up to this size (grids such as ``grid_thw``) are described by value: some towers
#: are called with one rebuilt from the inputs on every call (GLM-4.6V flattens ``video_grid_thw``).
SMALL_INT_TENSOR = 64


def _describe(value: Any) -> Any:
    """A hashable description of one argument; tensors by identity of their data and version, small
    integer tensors by value."""
    if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.numel() <= SMALL_INT_TENSOR:
        return ("ints", tuple(value.shape), value.dtype, str(value.device), tuple(value.flatten().tolist()))
    if isinstance(value, torch.Tensor):
        return ("tensor", value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype,
                str(value.device), value._version)
    if isinstance(value, (list, tuple)):
        return tuple(_describe(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _describe(v)) for k, v in value.items()))
    return ("value", repr(value))


@contextlib.contextmanager
def reuse_outputs(module: nn.Module | None) -> Iterator[dict[str, int]]:
    """Within the block, repeated calls of ``module`` on the same inputs reuse the first output.

    Yields a counter ``{"computed": n, "reused": m}``. On exit the module's own ``forward`` is back.
    ``module`` None (a family that names no tower) reuses nothing.
    """
    if module is None:
        yield {"computed": 0, "reused": 0}
        return
    had_own = "forward" in module.__dict__
    own = module.__dict__.get("forward")
    original = module.forward
    memo: dict[str, Any] = {}
    counts = {"computed": 0, "reused": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        key = _describe((args, kwargs))
        if memo.get("key") == key:
            counts["reused"] += 1
            return copy.copy(memo["output"])  # callers set attributes on it (LLaVA's pooler_output)
        output = original(*args, **kwargs)
        # Holding the inputs keeps their storage alive, so no later tensor can reuse its address.
        memo.update(key=key, output=output, inputs=(args, kwargs))
        counts["computed"] += 1
        return copy.copy(output)

    module.forward = forward
    try:
        yield counts
    finally:
        if had_own:
            module.forward = own
        else:
            del module.forward
        memo.clear()
