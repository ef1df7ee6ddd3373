"""How closely adatp's pre-LLM peers follow their authors' code, on the same tokens.

Runs the official selection code (loaded at run time from a checkout of each official repository,
or from vLLM's wheel; nothing of theirs is part of adatp) and adatp's own on the built-in model's
real projected video tokens of needle test clips, with the same inputs given to both sides (the
attention stand-in adatp uses, since neither side here captures the vision tower's attention; the
same frame features), and reports how many of the official kept positions adatp keeps too, and how
many of adatp's the official code keeps. Only the vision-side (pre-LLM) stage is compared; the
in-LLM stages are FastV's rule, which ``tests/methods/test_fastv.py`` checks exactly against an
eager attention map. For FrameFusion only its first merging round (on the embeddings, before
layer 0) is a function of the tokens alone; that round is compared.

    python benchmarks/peer_overlap.py [--flashvid PATH] [--holitom PATH] [--vllm WHEEL_OR_PATH]
        [--vidcom2 PATH] [--visionzip PATH] [--dycoke PATH] [--fastvid PATH] [--prunevid PATH]
        [--framefusion PATH] [--items 12] [--out FILE] [--cache FILE]

PATH is a git checkout or a bare git directory of the official repository:
github.com/Fanziyang-v/FlashVID, cokeshao/HoliTom, xuyang-liu16/VidCom2, dvlab-research/VisionZip,
KD-TAO/DyCoke, LunarShen/FastVID, Visual-AI/PruneVid, thu-nics/FrameFusion. ``--vllm`` takes vLLM's
wheel (``pip download vllm==0.32.0 --no-deps``) or a vLLM checkout: its ``video_prune/vidcom2.py``.
Only the peers given are run; with ``--out`` an existing file keeps the rows of the others.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import types
import zipfile
from pathlib import Path
from types import SimpleNamespace

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


def _module_from_text(text: str, name: str):
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _official_functions(text: str, names: list[str], namespace: dict, origin: str) -> dict:
    """Compile the named top-level functions or methods (found anywhere in ``text``) into
    ``namespace`` unchanged, so that their global names resolve there; returns the namespace."""
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name in names and node.name not in found:
            found[node.name] = textwrap.dedent(ast.get_source_segment(text, node))
    missing = sorted(set(names) - set(found))
    if missing:
        raise SystemExit(f"{origin}: the official code changed: {', '.join(missing)} not found")
    for name in names:
        exec(compile(found[name], f"<official {origin}: {name}>", "exec"), namespace)
    return namespace


def _rows_of(rows: torch.Tensor, table: torch.Tensor, labels: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """Labels of the rows of ``table`` that ``rows`` copy (max abs difference <= tol); -1 if none."""
    dist = torch.cdist(rows.double(), table.double(), p=float("inf"))
    best, idx = dist.min(dim=1)
    return torch.where(best <= tol, labels[idx], torch.full_like(idx, -1))


# --- VidCom2 -----------------------------------------------------------------------------------

VLLM_VIDCOM2 = "vllm/multimodal/video_prune/vidcom2.py"


def load_vllm_vidcom2(path: Path):
    """vLLM's ``video_prune/vidcom2.py`` (imports torch only), from the wheel or a checkout."""
    if path.suffix == ".whl":
        text = zipfile.ZipFile(path).read(VLLM_VIDCOM2).decode()
    else:
        text = _read(path, VLLM_VIDCOM2)
    return _module_from_text(text, "official_vllm_vidcom2")


def load_vidcom2(repo: Path):
    """The authors' ``token_compressor/vidcom2/vidcom2.py`` (imports torch only)."""
    return _module_from_text(_read(repo, "token_compressor/vidcom2/vidcom2.py"), "official_vidcom2")


def official_vllm_vidcom2_kept(mod, tokens, retain) -> torch.Tensor:
    num_frames, c, dim = tokens.shape
    # (T, H, W) with spatial merge 2 gives H/2 * W/2 = c tokens a frame.
    mask = mod.compute_retention_mask(tokens.reshape(-1, dim).clone(), (num_frames, 2, 2 * c), 2, 1.0 - retain)
    return torch.nonzero(mask).flatten()


def official_vidcom2_kept(mod, tokens, retain) -> torch.Tensor:
    """The authors' ``vidcom2_compression`` steps up to the kept indices (it returns features)."""
    num_frames, c, dim = tokens.shape
    sel = mod.select_low_var_channels(tokens.reshape(-1, dim).clone())
    vid_score, frame_score = mod.compute_gaussian_scores(sel, c)
    scales = mod.compute_scales(-vid_score.mean(dim=-1), retain)
    indices = mod.select_outlier_indices(vid_score + frame_score, scales, c)
    return torch.sort(mod._map_linear_offset(indices, c)).values


def adatp_vidcom2_kept(tokens, budget) -> torch.Tensor:
    from adatp.methods.vidcom2 import frame_budgets, frame_weights, vidcom2_keep, vidcom2_similarities

    video_sim, frame_sim = vidcom2_similarities(tokens)
    return vidcom2_keep(video_sim, frame_sim, frame_budgets(budget, frame_weights(video_sim), tokens.shape[1]))


# --- VisionZip ---------------------------------------------------------------------------------


def load_visionzip(repo: Path):
    """``CLIPVisionTower_VisionZip.forward`` (``visionzip/clip_encoder.py``), the dominant +
    contextual selection, unchanged; the CLIP tower it calls is a stub handing it our tensors."""
    ns = _official_functions(_read(repo, "visionzip/clip_encoder.py"), ["forward"], {"torch": torch, "nn": torch.nn},
                             "VisionZip clip_encoder.py")
    return ns["forward"]


class _StubTower:
    """What the official forward reads from the CLIP tower: attentions[-2], hidden_states[-2],
    the penultimate layer's ``metric`` (keys) and ``_info``."""

    def __init__(self, hidden, attn, metric, dominant, contextual):
        self._info = {"dominant": dominant, "contextual": contextual}
        self.vision_model = SimpleNamespace(encoder=SimpleNamespace(layers=[SimpleNamespace(metric=metric), None]))
        self.out = SimpleNamespace(attentions=(attn, None), hidden_states=(hidden, None))

    def __call__(self, images, output_hidden_states=True, output_attentions=True):
        return self.out


def official_visionzip_kept(forward, tokens, frame_budgets, contextual) -> torch.Tensor:
    """Per frame: a [CLS] stand-in (the frame mean, not counted) whose attention row is adatp's
    dominant signal; keys = the projected tokens; features = the identity, so that the returned
    tokens say which positions they hold. Budgets per frame as adatp's (matched B)."""
    from adatp.methods.visionzip import dominant_scores

    kept = []
    for f, (b, k) in enumerate(zip(frame_budgets, contextual)):
        x = tokens[f]
        c = x.shape[0]
        if k < 1 or b - k < 0:
            raise SystemExit(f"VisionZip's forward needs >= 1 contextual token (frame {f}: budget {b}, contextual {k})")
        metric = torch.cat([x.mean(0, keepdim=True), x])[None]  # (1, c+1, D)
        attn = torch.zeros(1, 1, c + 1, c + 1)
        attn[0, 0, 0, 1:] = dominant_scores(x)
        hidden = torch.eye(c + 1)[None]
        stub = SimpleNamespace(vision_tower=_StubTower(hidden, attn, metric, b - k, k), device="cpu", dtype=torch.float32)
        out, all_indices = forward(stub, torch.zeros(1))
        dominant = all_indices[0, 1:] - 1
        # Contextual rows are target + mean(assigned): the target's entry is 1, each member's 1/n.
        # (A target with one member has two entries of 1: then the one on the official stride.)
        rest = torch.tensor([p for p in range(c) if p not in set(dominant.tolist())])
        stride = set(rest[torch.arange(0, rest.numel(), max(1, rest.numel() // k))[:k]].tolist())
        for row in out[0, b - k + 1:, 1:]:
            ones = torch.nonzero(row >= 1 - 1e-6).flatten().tolist()
            target = ones[0] if len(ones) == 1 else [p for p in ones if p in stride][0]
            kept.append(f * c + target)
        kept += (f * c + dominant).tolist()
    return torch.tensor(sorted(kept))


# --- DyCoke ------------------------------------------------------------------------------------


def load_dycoke(repo: Path):
    """``dycole_ttm`` from ``llava/model/llava_arch.py`` (a module-level function, torch only)."""
    ns = _official_functions(_read(repo, "llava/model/llava_arch.py"), ["dycole_ttm"], {"torch": torch},
                             "DyCoke llava_arch.py")
    return ns["dycole_ttm"]


def official_dycoke_kept(ttm, tokens, merging_ratio) -> torch.Tensor:
    """TTM returns the kept tokens' features (copies): their positions are read back by matching."""
    import warnings

    num_frames, c, dim = tokens.shape
    flat = tokens.reshape(-1, dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the official torch.tensor(tensor) copy warns
        out = ttm(flat.clone(), c, merging_ratio)
    labels = _rows_of(out, flat, torch.arange(flat.shape[0]), tol=0.0)
    if (labels < 0).any() or labels.unique().numel() != labels.numel():
        raise SystemExit("DyCoke: a kept token is not a unique copy of an input token")
    return torch.sort(labels).values


# --- FastVID -----------------------------------------------------------------------------------

FASTVID_FILE = "fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py"


def load_fastvid(repo: Path):
    """FastVID's selection is inline in its Qwen2 decoder's forward (``##### FastVID #####`` up
    to the kept indices); that block is compiled unchanged and run on our tensors."""
    lines = _read(repo, FASTVID_FILE).splitlines()
    try:
        i = next(k for k, line in enumerate(lines) if "FastVID ####" in line)
        j = next(k for k in range(i, len(lines)) if "keep_indexs = torch.cat(keep_indexs, dim=0)" in lines[k])
    except StopIteration:
        raise SystemExit(f"FastVID: the official {FASTVID_FILE} changed: the FastVID block is not found") from None
    return compile(textwrap.dedent("\n".join(lines[i + 1 : j + 1])), f"<official FastVID {FASTVID_FILE}>", "exec")


def official_fastvid_kept(block, tokens, salient, retain) -> torch.Tensor:
    """The block's inputs: the video as the whole sequence plus one text token after it, the salient
    stand-in as ``frame_attn_weights``, the frames' mean tokens as ``frame_global_features``;
    official defaults (c 8, tau 0.9, d 0.4, p 4, beta 0.6)."""
    num_frames, c, dim = tokens.shape
    n = num_frames * c
    owner = SimpleNamespace(
        video_token_len=n, frame_num=num_frames, video_start_idx=0, frame_attn_weights=salient.reshape(-1).clone(),
        frame_global_features=tokens.mean(1), fastvid_retention_ratio=retain, fastvid_DySeg_c=8,
        fastvid_DySeg_tau=0.9, fastvid_STPrune_d=0.4, fastvid_DTM_p=4, fastvid_DTM_beta=0.6,
    )
    hidden = torch.cat([tokens.reshape(n, dim), torch.zeros(1, dim)])[None]
    ns = {"torch": torch, "F": F, "self": owner, "hidden_states": hidden, "seq_length": n + 1}
    exec(block, ns)
    keep = ns["keep_indexs"]
    return torch.sort(keep[keep < n]).values


# --- PruneVid ----------------------------------------------------------------------------------

PRUNEVID_FILE = "models/pllava/modeling_pllava.py"


def load_prunevid(repo: Path) -> dict:
    """``merge_frames_dynamic`` and what it calls (``cluster_dpc_knn``, ``refine_clusters``,
    ``segment_lengths``, ``index_points``, ``spatial_merge_tokens``, ``compute_cluster_vectors``)
    from ``models/pllava/modeling_pllava.py``, unchanged."""
    import numpy as np

    names = ["index_points", "cluster_dpc_knn", "segment_lengths", "refine_clusters", "merge_frames_dynamic",
             "spatial_merge_tokens", "compute_cluster_vectors"]
    ns = _official_functions(_read(repo, PRUNEVID_FILE), names,
                             {"torch": torch, "F": F, "einsum": torch.einsum, "np": np, "math": math}, "PruneVid")
    return ns


def official_prunevid_run(ns, tokens, cluster_ratio, seed=0):
    """Run ``merge_frames_dynamic`` (tau 0.8, k 7, temporal_segment_ratio 0.25) with ``cluster_ratio``;
    returns (kept flat indices, window sizes, number of output tokens, sizes of the clustered
    groups). Kept = the DPC-KNN centres
    of every clustered group (recorded as the official ``index_points`` call picks them) and every
    unclustered token, found by matching the returned rows to the tokens and to window means (a
    static token sits at its window's first frame, as in adatp)."""
    num_frames, c, dim = tokens.shape
    calls, last = [], {}
    official_index_points = ns["index_points"]

    def index_points(points, idx):
        last["idx"] = idx
        return official_index_points(points, idx)

    def spatial_merge_tokens(self, feature, num_cluster, k):
        out = ns["spatial_merge_tokens"](self, feature, num_cluster, k)
        calls.append((feature[0], last["idx"][0]))
        return out

    ns = dict(ns, index_points=index_points)
    for name in ("cluster_dpc_knn", "merge_frames_dynamic", "spatial_merge_tokens", "compute_cluster_vectors"):
        f = ns[name]
        ns[name] = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__)
    owner = SimpleNamespace(config=SimpleNamespace(num_frames=num_frames, pooling_shape=(num_frames, 1, c),
                                                   temporal_segment_ratio=0.25, cluster_ratio=cluster_ratio))
    owner.spatial_merge_tokens = types.MethodType(spatial_merge_tokens, owner)
    owner.compute_cluster_vectors = types.MethodType(ns["compute_cluster_vectors"], owner)
    torch.manual_seed(seed)  # DPC-KNN adds 1e-6 noise to densities
    out, _, _, windows = ns["merge_frames_dynamic"](owner, tokens.reshape(1, -1, dim).clone())
    # Candidates: every token (label t*c+p) and every window's mean at each position (label s*c+p).
    table, labels, start = [tokens.reshape(-1, dim)], [torch.arange(num_frames * c)], 0
    for w in windows:
        table.append(tokens[start : start + w].mean(0))
        labels.append(start * c + torch.arange(c))
        start += w
    table, labels = torch.cat(table), torch.cat(labels)
    kept = set(_rows_of(out[0], table, labels).tolist()) - {-1}
    for feature, idx in calls:
        found = _rows_of(feature[idx], table, labels)
        if (found < 0).any():
            raise SystemExit("PruneVid: a cluster centre is neither a token nor a window mean")
        kept |= set(found.tolist())
    if len(kept) != out.shape[1]:
        raise SystemExit(f"PruneVid: {len(kept)} positions read back for {out.shape[1]} returned tokens")
    return torch.tensor(sorted(kept)), windows, out.shape[1], [feature.shape[0] for feature, _ in calls]


def official_prunevid_ratio(ns, tokens, retain_tokens, seed=0) -> float:
    """The cluster_ratio whose official output count comes closest to ``retain_tokens`` from below
    (groups of <= 14 tokens stay whole, larger ones keep int(n * ratio), at least 1 here); the
    group sizes come from a run with ratio 1 (int(n * 1) = n centres)."""
    _, _, total, sizes = official_prunevid_run(ns, tokens, 1.0, seed)
    whole = total - sum(sizes)
    lo, hi = (1 + 1e-9) / min(sizes), 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if whole + sum(int(n * mid) for n in sizes) <= retain_tokens else (lo, mid)
    return lo


def adatp_prunevid_kept(tokens, windows_or_segments, budget) -> torch.Tensor:
    from adatp.methods.prunevid import PruneVid

    num_frames, c, dim = tokens.shape
    owner = SimpleNamespace(num_frames=num_frames, tokens_per_frame=c, frame_segments=windows_or_segments,
                            config=SimpleNamespace(tau=0.8, k=7),
                            group_of=torch.arange(num_frames).repeat_interleave(c), info={})
    return PruneVid._merge(owner, budget, torch.arange(num_frames * c), tokens.reshape(-1, dim)).kept


# --- FrameFusion -------------------------------------------------------------------------------


def load_framefusion(repo: Path):
    """``framefusion/main.py`` (imports torch only): the ``FrameFusion`` module."""
    return _module_from_text(_read(repo, "framefusion/main.py"), "official_framefusion").FrameFusion


def official_framefusion_round1(FrameFusion, tokens, cost) -> torch.Tensor:
    """The official first merging round (on the embeddings, before layer 0) with ``cost``
    (S_th 0.6): the video as the whole sequence; positions come back through the 2-D
    position-embedding tensor the official forward masks."""
    num_frames, c, dim = tokens.shape
    n = num_frames * c
    ff = FrameFusion(cost=cost, similarity_lower_bound=0.6, ratio_lower_bound=0.1)
    ff.prepare(torch.arange(c).repeat(num_frames)[None], c, torch.tensor(0), torch.tensor(n - 1), torch.tensor(n), n)
    _, positions, _ = ff(tokens.reshape(1, n, dim).clone(), torch.arange(n)[None], None)
    return positions[0]


def adatp_framefusion_kept(tokens, budget) -> torch.Tensor:
    from adatp.methods.framefusion import previous_frame_similarity, temporal_merge_plan

    num_frames, c, dim = tokens.shape
    alive = torch.arange(num_frames * c)
    sim = previous_frame_similarity(alive, tokens.reshape(-1, dim), c)
    return temporal_merge_plan(alive, sim, c, budget).kept


# --- main --------------------------------------------------------------------------------------


def _source_version(path: Path) -> str:
    """The wheel's file name, or the checkout's commit."""
    if path.suffix == ".whl":
        return path.name
    git = ["git", "-C", str(path)] if (path / ".git").exists() else ["git", "--git-dir", str(path)]
    return subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def _tally(totals, key, ours, theirs) -> None:
    """Adds |ours & theirs|, |theirs|, |ours| (distinct positions) and theirs' token count (the
    official FlashVID can return one position twice: an ADTS pick that is also a cluster centre)."""
    a, b = set(ours.tolist()), set(theirs.tolist())
    t = totals.setdefault(key, [0, 0, 0, 0])
    t[0], t[1], t[2], t[3] = t[0] + len(a & b), t[1] + len(b), t[2] + len(a), t[3] + theirs.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("flashvid", "holitom", "vllm", "vidcom2", "visionzip", "dycoke", "fastvid", "prunevid", "framefusion"):
        parser.add_argument(f"--{name}", type=Path, default=None)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--retentions", default="0.25,0.10")
    parser.add_argument("--dycoke-ratios", default="0.7,0.9", help="official merging_ratio K values (fixed counts)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="save / reuse the clips' tokens (a .pt file)")
    parser.add_argument("--propagate-counts", action="store_true",
                        help="experiment: patch the official TSTM to count whole trees (see load_flashvid)")
    args = parser.parse_args()

    from adatp.ops.budgets import tokens_for_retention
    from adatp.ops.segmentation import segment_frames

    torch.set_num_threads(1)
    retentions = [float(r) for r in args.retentions.split(",")]
    if args.cache is not None and args.cache.exists():
        clips = torch.load(args.cache)
    else:
        from adatp.inputs import resolve_model
        from adatp.organism.build import adatp_tiny_dir
        from adatp.pipeline import load_model
        from adatp.tasks.needle import iter_items

        model_dir, _ = resolve_model(adatp_tiny_dir())
        model = load_model(model_dir)
        clips = [clip_tokens(model, model_dir, item) for item in iter_items("test", args.items)]
        if args.cache is not None:
            torch.save(clips, args.cache)
    clips = clips[: args.items]

    totals: dict[tuple, list[int]] = {}  # (method, official, variant, R): [shared, official, adatp, tokens]
    notes: dict[tuple, dict] = {}
    peers = {name: getattr(args, name) for name in ("flashvid", "holitom", "vllm", "vidcom2", "visionzip", "dycoke",
                                                     "fastvid", "prunevid", "framefusion")}
    if peers["flashvid"] is not None:
        FlashVidConfig, flashvid_compression = load_flashvid(peers["flashvid"], args.propagate_counts)
    if peers["holitom"] is not None:
        holitom_arch = load_holitom(peers["holitom"])
    vllm = load_vllm_vidcom2(peers["vllm"]) if peers["vllm"] is not None else None
    vidcom2 = load_vidcom2(peers["vidcom2"]) if peers["vidcom2"] is not None else None
    visionzip = load_visionzip(peers["visionzip"]) if peers["visionzip"] is not None else None
    dycoke = load_dycoke(peers["dycoke"]) if peers["dycoke"] is not None else None
    fastvid = load_fastvid(peers["fastvid"]) if peers["fastvid"] is not None else None
    prunevid = load_prunevid(peers["prunevid"]) if peers["prunevid"] is not None else None
    framefusion = load_framefusion(peers["framefusion"]) if peers["framefusion"] is not None else None

    for tokens in clips:
        num_frames, c, _ = tokens.shape
        n = num_frames * c
        for r in retentions:
            budget = tokens_for_retention(r, n)
            if peers["flashvid"] is not None:
                from adatp.methods.flashvid import flashvid_selection
                from adatp.methods.visionzip import dominant_scores

                attn = torch.stack([dominant_scores(f) for f in tokens])
                torch.manual_seed(0)  # the official DPC adds 1e-6 noise to densities
                cfg = FlashVidConfig(retention_ratio=r, expansion=1.0, token_selection_method="attn_div_v2")
                _, theirs = flashvid_compression(tokens.clone(), attn.clone(), cfg)
                ours = flashvid_selection(tokens, attn, segment_frames(tokens.mean(1), 0.9, 8), budget)[0]
                _tally(totals, ("flashvid", "Fanziyang-v/FlashVID", "", r), ours, theirs)
            if peers["holitom"] is not None:
                from adatp.methods.holitom import holitom_selection
                from adatp.methods.visionzip import dominant_scores

                attn = torch.stack([dominant_scores(f) for f in tokens])
                torch.manual_seed(0)
                theirs = official_holitom_kept(holitom_arch, tokens.clone(), attn.clone(), r)
                _tally(totals, ("holitom", "cokeshao/HoliTom", "", r), holitom_selection(tokens, attn, budget)[0], theirs)
            ours_vidcom2 = adatp_vidcom2_kept(tokens, budget) if (vllm or vidcom2) else None
            if vllm is not None:
                _tally(totals, ("vidcom2", "vLLM video_prune", "", r), ours_vidcom2,
                       official_vllm_vidcom2_kept(vllm, tokens, r))
            if vidcom2 is not None:
                theirs = official_vidcom2_kept(vidcom2, tokens, r)
                _tally(totals, ("vidcom2", "xuyang-liu16/VidCom2", "", r), ours_vidcom2, theirs)
                _tally(totals, ("vidcom2", "xuyang-liu16/VidCom2", "matched B", r),
                       adatp_vidcom2_kept(tokens, theirs.numel()), theirs)
            if visionzip is not None:
                from adatp.methods.visionzip import contextual_count, zip_video

                ours, _, budgets = zip_video(tokens, budget, 10 / 64)
                theirs = official_visionzip_kept(visionzip, tokens, budgets, [contextual_count(b, 10 / 64) for b in budgets])
                _tally(totals, ("visionzip", "dvlab-research/VisionZip", "", r), ours, theirs)
            if fastvid is not None:
                from adatp.methods.fastvid import fastvid_selection, salient_scores

                salient = salient_scores(tokens)
                torch.manual_seed(0)  # the official DPC adds 1e-6 noise to densities
                theirs = official_fastvid_kept(fastvid, tokens, salient, r)
                segments = segment_frames(tokens.mean(1), 0.9, 8)
                _tally(totals, ("fastvid", "LunarShen/FastVID", "", r),
                       fastvid_selection(tokens, salient, segments, budget)[0], theirs)
                _tally(totals, ("fastvid", "LunarShen/FastVID", "matched B", r),
                       fastvid_selection(tokens, salient, segments, theirs.numel())[0], theirs)
            if prunevid is not None:
                ratio = official_prunevid_ratio(prunevid, tokens, budget)
                theirs, windows, _, _ = official_prunevid_run(prunevid, tokens, ratio)
                notes.setdefault(("prunevid", r), []).append(round(ratio, 4))
                official_segments = torch.arange(len(windows)).repeat_interleave(torch.tensor(windows))
                own_segments = segment_frames(tokens.mean(1), 0.92, max(1, int(num_frames * 0.25)))
                for variant, seg, b in (("", own_segments, budget), ("matched B", own_segments, theirs.numel()),
                                        ("matched B, official scenes", official_segments, theirs.numel())):
                    _tally(totals, ("prunevid", "Visual-AI/PruneVid", variant, r), adatp_prunevid_kept(tokens, seg, b),
                           theirs)
            if framefusion is not None:
                theirs = official_framefusion_round1(framefusion, tokens, r)
                _tally(totals, ("framefusion", "thu-nics/FrameFusion", "round 1, matched B", r),
                       adatp_framefusion_kept(tokens, theirs.numel()), theirs)
        if dycoke is not None:
            from adatp.methods.dycoke import temporal_merge

            for k in (float(x) for x in args.dycoke_ratios.split(",")):
                theirs = official_dycoke_kept(dycoke, tokens, k)
                _tally(totals, ("dycoke", "KD-TAO/DyCoke", f"K={k}, matched B", round(theirs.numel() / n, 4)),
                       temporal_merge(tokens, theirs.numel())[0], theirs)

    rows = []
    clip_size = clips[0].shape[0] * clips[0].shape[1]
    for (method, official, variant, r), t in totals.items():
        row = {"method": method, "official": official, "variant": variant, "retention": r, "items": len(clips),
               "budget_B": t[1] if method == "dycoke" else tokens_for_retention(r, clip_size) * len(clips),
               "kept_official": t[1], "kept_adatp": t[2], "shared": t[0],
               "share_of_official": round(t[0] / t[1], 4), "share_of_adatp": round(t[0] / max(t[2], 1), 4)}
        if t[3] != t[1]:
            row["kept_official_tokens"] = t[3]
        if method == "prunevid":
            row["official_cluster_ratio_per_clip"] = notes[("prunevid", r)]
        rows.append(row)
    for row in rows:
        print(f"{row['method']:11s} {row['official']:26s} {row['variant']:28s} R={row['retention']:.4f}: "
              f"{row['shared']}/{row['kept_official']} official kept ({100 * row['share_of_official']:.1f}%), "
              f"{row['shared']}/{row['kept_adatp']} of adatp's ({100 * row['share_of_adatp']:.1f}%)")
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else {}
        ran = {(row["method"], row["official"]) for row in rows}
        kept_rows = [row for row in old.get("rows", []) if (row["method"], row.get("official")) not in ran]
        commands = dict(old.get("commands", {}))
        if "command" in old:  # the first version of this file: one command for flashvid + holitom
            commands.setdefault("flashvid,holitom", old["command"])
        argv = sys.argv[1:]
        if "--cache" in argv:  # a cache only saves the model's forward passes: not part of the command
            i = argv.index("--cache")
            argv = argv[:i] + argv[i + 2 :]
        commands[",".join(sorted({m for m, _ in ran}))] = "python benchmarks/peer_overlap.py " + " ".join(argv)
        sources = dict(old.get("sources", {}))
        sources.update({name: _source_version(path) for name, path in peers.items() if path is not None})
        payload = {"model": "adatp-tiny", "split": "test", "official_counts_propagated": args.propagate_counts,
                   "sources": sources, "commands": commands, "rows": kept_rows + rows}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
