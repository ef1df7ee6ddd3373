"""How closely adatp's flashvid and holitom follow their authors' code, on the same tokens.

Runs the official selection functions (loaded at run time from a checkout of each official
repository; nothing of theirs is part of adatp) and adatp's own on the built-in model's real
projected video tokens of needle test clips, with the same attention signal given to both (the
stand-in adatp uses, since neither side here captures SigLIP's attention), and reports how many
of the official kept positions adatp keeps too. Only the vision-side (pre-LLM) stage is compared;
the in-LLM stages are FastV's rule, which ``tests/methods/test_fastv.py`` checks exactly against an
eager attention map.

    python benchmarks/peer_overlap.py --flashvid PATH --holitom PATH [--items 12] [--out FILE]

PATH is a git checkout or a bare git directory of github.com/Fanziyang-v/FlashVID and
github.com/cokeshao/HoliTom.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F


def _read(repo: Path, path: str) -> str:
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{path}"], capture_output=True, text=True,
                          check=True).stdout


COUNT_BUG = "aggregated_token_counts = assigned_one_hot.sum(dim=0)"
COUNT_FIX = "aggregated_token_counts = torch.einsum('m n, m -> n', assigned_one_hot, frame_token_counts[mask[frame_idx]])"


def load_flashvid(repo: Path, propagate_counts: bool = False):
    """The official ``flashvid`` compression functions (their three pure-torch modules only).

    ``propagate_counts``: make the official TSTM add a merged token's whole tree size to its
    anchor's count (the released code adds 1 per direct child, so a root becomes sum(tree) /
    (1 + direct children) rather than the tree average the paper describes): an experiment that
    isolates how much of the gap to adatp that one line explains.
    """
    pkg = Path(tempfile.mkdtemp()) / "official_flashvid"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("configuration_flashvid.py", "token_selection.py", "utils.py"):
        text = _read(repo, f"flashvid/{name}")
        if propagate_counts and name == "utils.py":
            if COUNT_BUG not in text:
                raise SystemExit("the official utils.py changed: the count line to patch is not there")
            text = text.replace(COUNT_BUG, COUNT_FIX)
        (pkg / name).write_text(text)
    sys.path.insert(0, str(pkg.parent))
    from official_flashvid.configuration_flashvid import FlashVidConfig
    from official_flashvid.utils import flashvid_compression

    return FlashVidConfig, flashvid_compression


def load_holitom(repo: Path):
    """The official HoliTom mixin (``holitom/llava_arch.py``), with its LLaVA imports stubbed."""
    for mod, names in {"llava": [], "llava.constants": ["IGNORE_INDEX", "IMAGE_TOKEN_INDEX", "DEFAULT_IMAGE_PATCH_TOKEN",
                                                        "DEFAULT_IM_START_TOKEN", "DEFAULT_IM_END_TOKEN"],
                       "llava.mm_utils": ["get_anyres_image_grid_shape"], "llava.utils": ["rank0_print", "rank_print"]}.items():
        m = sys.modules.setdefault(mod, types.ModuleType(mod))
        for n in names:
            setattr(m, n, (lambda *a, **k: None) if n.endswith(("print", "shape")) else -200)
    path = Path(tempfile.mkdtemp()) / "official_holitom_arch.py"
    path.write_text(_read(repo, "holitom/llava_arch.py"))
    spec = importlib.util.spec_from_file_location("official_holitom_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LlavaMetaForCausalLM_holitom()


def official_holitom_kept(arch, tokens, attn, retain, tau=0.8, beta=0.6, knn=7) -> torch.Tensor:
    """The official outer-LLM steps (``prepare_inputs_labels_for_multimodal`` for a video), kept
    positions as flat indices t * c + p (static tokens at their window's first frame)."""
    num_frames, c, _ = tokens.shape
    normed = F.normalize(tokens, p=2, dim=-1)
    sim = F.cosine_similarity(normed[:-1], normed[1:], dim=-1)
    windows, reduced = arch.select_static_windows(sim, num_frames, tau, 1024)
    n = num_frames * c
    retain = min(retain / ((n - reduced) / n), 1)
    static_f, dyn_f, _, dyn_a, static_p, dyn_p = arch.get_static_dynamic_features(tokens, attn, windows, sim, tau)
    kept = []
    for i, (s, e) in enumerate(windows):
        _, pos = arch.merge_tokens_by_attention_density(dyn_f[i], dyn_a[i], dyn_p[i], retain, 0.0, beta, knn)
        kept += [(s + row) * c + int(p) for row in range(pos.shape[0]) for p in pos[row]]
        if e > s and static_f[i].shape[0] > 0:
            _, spos = arch.merge_tokens_by_density(static_f[i].unsqueeze(0), static_p[i], retain, beta, knn)
            kept += [s * c + int(p) for p in spos[0]]
    return torch.tensor(sorted(kept))


def clip_tokens(model, model_dir, item):
    """(T, c, D) projected video tokens of one needle item, as the language model receives them."""
    from adatp.adapters import get_adapter
    from adatp.inputs import prepare_inputs

    inputs = prepare_inputs(model_dir, item.frames, item.prompt())
    seen = {}
    lm = model.model.language_model
    def grab(module, args, kwargs):
        seen["x"] = kwargs["inputs_embeds"]

    handle = lm.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    adapter = get_adapter(model)
    span = adapter.find_video(inputs["input_ids"], inputs["pixel_values_videos"].shape[1])
    layout = span.layout
    return seen["x"][0, span.start + layout.grid_offsets()].reshape(layout.num_frames, layout.tokens_per_frame, -1).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flashvid", type=Path, required=True)
    parser.add_argument("--holitom", type=Path, required=True)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--retentions", default="0.25,0.10")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--propagate-counts", action="store_true",
                        help="experiment: patch the official TSTM to count whole trees (see load_flashvid)")
    args = parser.parse_args()

    from adatp.eval.needle import iter_items
    from adatp.inputs import resolve_model
    from adatp.methods.flashvid import flashvid_selection
    from adatp.methods.holitom import holitom_selection
    from adatp.methods.visionzip import dominant_scores
    from adatp.ops.budgets import tokens_for_retention
    from adatp.ops.segmentation import segment_frames
    from adatp.organism.build import adatp_tiny_dir
    from adatp.pipeline import load_model

    torch.set_num_threads(1)
    FlashVidConfig, flashvid_compression = load_flashvid(args.flashvid, args.propagate_counts)
    holitom_arch = load_holitom(args.holitom)
    model_dir, _ = resolve_model(adatp_tiny_dir())
    model = load_model(model_dir)
    retentions = [float(r) for r in args.retentions.split(",")]
    totals = {(m, r): [0, 0, 0] for m in ("flashvid", "holitom") for r in retentions}  # both, official, adatp
    for item in iter_items("test", args.items):
        tokens = clip_tokens(model, model_dir, item)
        attn = torch.stack([dominant_scores(f) for f in tokens])
        segments = segment_frames(tokens.mean(1), 0.9, 8)
        for r in retentions:
            budget = tokens_for_retention(r, tokens.shape[0] * tokens.shape[1])
            torch.manual_seed(0)  # the official DPC adds 1e-6 noise to densities
            cfg = FlashVidConfig(retention_ratio=r, expansion=1.0, token_selection_method="attn_div_v2")
            _, theirs = flashvid_compression(tokens.clone(), attn.clone(), cfg)
            ours = flashvid_selection(tokens, attn, segments, budget)[0]
            torch.manual_seed(0)
            theirs_h = official_holitom_kept(holitom_arch, tokens.clone(), attn.clone(), r)
            ours_h = holitom_selection(tokens, attn, budget)[0]
            for m, a, b in (("flashvid", ours, theirs), ("holitom", ours_h, theirs_h)):
                both = len(set(a.tolist()) & set(b.tolist()))
                t = totals[(m, r)]
                t[0], t[1], t[2] = t[0] + both, t[1] + b.numel(), t[2] + a.numel()
    rows = [{"method": m, "retention": r, "items": args.items, "kept_official": t[1], "kept_adatp": t[2],
             "shared": t[0], "share_of_official": round(t[0] / t[1], 4)} for (m, r), t in totals.items()]
    for row in rows:
        print(f"{row['method']:9s} R={row['retention']:.2f}: adatp keeps {row['shared']}/{row['kept_official']} "
              f"({100 * row['share_of_official']:.1f}%) of the official kept positions (adatp kept {row['kept_adatp']})")
    if args.out is not None:
        payload = {"model": "adatp-tiny", "split": "test", "official_counts_propagated": args.propagate_counts,
                   "command": "python benchmarks/peer_overlap.py " + " ".join(sys.argv[1:]), "rows": rows}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
