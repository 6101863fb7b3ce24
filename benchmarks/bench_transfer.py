"""Speed and memory of the label transfer on this machine (issue 7: performance).

    .venv/bin/python benchmarks/bench_transfer.py            # everything (45 min at load 5 on 2 cores)
    .venv/bin/python benchmarks/bench_transfer.py --quick    # shorter: 24 frames, memory at 100 only
    .venv/bin/python benchmarks/bench_transfer.py --profile  # + operator breakdown of a round
    .venv/bin/python benchmarks/bench_transfer.py --parts memory --memory 1000   # one part again

Prints every figure beside its target and writes benchmarks/results/transfer.json,
transfer.md (with the machine, torch version and load average: the machine may be shared)
and transfer.png:

* correction round on real 480p video (bear, first 80 frames): official scribble 001,
  propagate, then the correction (scribble 002 on another frame) -> full-resolution masks
  of every frame, with cached embeddings and with re-embedding; the default (stride 8) and the stride-4 model;
* the transfer kernel's GFLOP/s (global matmul + local window matmul, per frame, real
  embeddings) against a plain large fp32 matmul measured in the same run;
* embedding extraction in frames per second at 480p for each shipped model;
* peak resident memory (``getrusage``) of a session on 100, 400 and 1,000 synthetic 480p
  frames, each in its own subprocess: frames generated lazily, embeddings fp16.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import simwidgets as sw  # noqa: E402
from simwidgets.session import InteractiveSession  # noqa: E402
from simwidgets.transfer import LabelTransfer, References, knn  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
#: parts of the benchmark (``--parts``) and their keys in transfer.json
PARTS = {"kernel": "kernel", "rounds": "correction_round", "fps": "embedding_fps", "memory": "memory"}
MODELS = {"default": "default", "effnet-lite0-s4": str(REPO / "data/models/effnet-lite0-s4.pt"), "baseline": "baseline"}
TARGETS = {"round_cached_s": 1.0, "first_round_s": 10.0, "preview_s": 0.5, "kernel_efficiency": 0.5,
           "embedding_fps_default": 5.0,
           "rss_100_gib": 2.0, "rss_1000_gib": 4.0}
#: issue 14's "today" column (default model, this CPU, before its work), printed beside each figure
ISSUE_TODAY = {"round_cached_s": 13.3, "first_round_s": 32.3, "kernel_efficiency": 0.19}


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    flags = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": sw.describe_device(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------- rounds
def _bear(n_frames: int):
    """``n_frames`` of bear around its scribbled frames (39 and 41): the first 80 by default."""
    video = sw.load_sample("bear", lazy=True)
    if n_frames >= video.n_frames:
        return video
    start = min(max(0, 40 - n_frames // 2), video.n_frames - n_frames)
    return video.clip(start, start + n_frames)


def _torch_rounds(video, model: str) -> tuple[float, float]:
    """The same two rounds with the plain torch kernels (no numba): the in-run comparison."""
    session = InteractiveSession(video, model=MODELS[model])
    session.transfer.fused = False
    session.add_scribbles(video.scribbles["001"])
    session.propagate()
    first = session.history[-1].seconds  # embedding included
    session.add_scribbles(video.scribbles["002"])
    session.propagate()
    return first, session.history[-1].seconds


def correction_round(model: str, n_frames: int, profile: bool = False) -> dict:
    """Round 1 (scribble 001, embeds every frame), then the timed correction round (002);
    then both again on the plain torch kernels, for comparison in the same run."""
    video = _bear(n_frames)
    session = InteractiveSession(video, model=MODELS[model])
    session.add_scribbles(video.scribbles["001"])
    first = session.propagate()
    embed_seconds = session.history[-1].embed_seconds
    session.add_scribbles(video.scribbles["002"])
    # what the app shows at once on Propagate: the frame on screen (where 002 was drawn)
    # from the references alone, before the round runs in its thread; one call, as a user meets it
    start = time.perf_counter()
    session.preview(video.scribbles["002"].annotated_frames[0])
    preview = time.perf_counter() - start
    session.propagate()  # the correction round itself (embeddings cached, 002's frame is new)
    cached = session.history[-1].seconds
    references = session.references()
    # the same references again, as a new round of the session: nothing new to match (what
    # pressing Propagate after a change of temperature costs)
    repeat = best_of(lambda: session.propagate(), repeat=1)
    annotated = sorted(references)
    votes = (session.n_frames - annotated[0]) + (annotated[-1] + 1)  # frames labelled per round
    row = {
        "model": model,
        "stride": session.transfer.stride,
        "grid": list(session.transfer.grid),
        "frames": session.n_frames,
        "size": [session.height, session.width],
        "annotated_frames": annotated,
        "frame_votes": votes,
        "first_round_s": session.history[0].seconds,  # embedding included
        "first_transfer_s": first.seconds,
        "embed_s": embed_seconds,
        "round_cached_s": cached,
        "preview_s": preview,
        "repeat_same_references_s": repeat,
        "round_with_embedding_s": cached + embed_seconds,
    }
    row["ratio_with_embedding"] = row["round_with_embedding_s"] / cached
    row["fused"] = session.transfer.fused
    if session.transfer.fused:
        row["torch_first_round_s"], row["torch_round_cached_s"] = _torch_rounds(video, model)
    if profile:
        row["profile"] = profile_round(session.transfer, references)
    return row


def profile_round(engine: LabelTransfer, references) -> dict:
    """Self CPU seconds of a cached round grouped by what the time goes to."""
    from torch.profiler import ProfilerActivity, profile

    groups = {
        "matmul (global mm + local bmm)": ("aten::mm", "aten::bmm", "aten::addmm"),
        "top-k": ("aten::topk",),
        "copies (window keys, transposes)": ("aten::copy_", "aten::cat", "aten::stack", "aten::index", "aten::gather"),
        "window mask add": ("aten::add_",),
        "upsampling": ("aten::upsample_bilinear2d",),
    }
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.propagate(references)
    totals = {name: 0.0 for name in groups}
    totals["other"] = 0.0
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        for name, ops in groups.items():
            if event.key in ops:
                totals[name] += seconds
                break
        else:
            totals["other"] += seconds
    return {name: round(s, 3) for name, s in totals.items()}


# --------------------------------------------------------------------------- kernel
def kernel_efficiency(model: str = "default") -> dict:
    """Achieved GFLOP/s of one frame's vote (real embeddings, 2,048 references, 3 context
    frames) against a plain (4096 x 256) @ (256 x 4096) fp32 matmul in the same run."""
    torch.manual_seed(0)
    a, b = torch.randn(4096, 256), torch.randn(256, 4096)
    a @ b
    matmul_s = best_of(lambda: a @ b, repeat=5)
    matmul_gflops = 2 * 4096 * 256 * 4096 / matmul_s / 1e9
    video = _bear(4)
    engine = LabelTransfer(video.frames, model=MODELS[model])
    engine.cache.ensure()
    embeddings = [engine.cache[i] for i in range(4)]
    dim, h, w = embeddings[0].shape
    n_classes, n_refs = 2, 2048
    generator = torch.Generator().manual_seed(0)
    pick = torch.randint(0, h * w, (n_refs,), generator=generator)
    refs = References(embeddings[0].reshape(dim, -1).T[pick].contiguous(),
                      torch.softmax(torch.randn(n_refs, n_classes, generator=generator), 1))
    context = [(e, torch.softmax(torch.randn(n_classes, h, w, generator=generator), 0)) for e in embeddings[:3]]
    config = engine.config.for_stride(engine.stride)

    def vote():
        return knn.vote_frame(embeddings[3], refs.embeddings, refs.labels, context, config.top_k,
                              config.temperature, config.window)

    vote()
    vote_s = best_of(vote)
    fused_s = None
    from simwidgets.transfer import fused, fused_vote, fused_window

    if fused.available():
        def fused_frame_vote():
            """What the engine runs on a CPU with numba: the fused global top-k, the fused
            window match, and the fused vote."""
            query = embeddings[3]
            candidates = fused.topk_dot(query.reshape(dim, -1).T, refs.embeddings, config.top_k)
            local = fused_window.window_topk(query, [e for e, _ in context], config.window, config.top_k, knn.TILE)
            return fused_vote.vote_candidates(candidates, refs.labels, local, [p for _, p in context], (h, w),
                                              config.top_k, config.temperature, config.window)

        fused_frame_vote()
        fused_s = best_of(fused_frame_vote)
    size = knn.TILE + 2 * config.window
    n_keys = config.n_context * size * size
    flops = 2 * h * w * n_refs * dim + 2 * h * w * n_keys * (dim + 1)
    useful = 2 * h * w * n_refs * dim + 2 * h * w * config.n_context * (2 * config.window + 1) ** 2 * dim
    return {
        "model": model,
        "grid": [h, w],
        "matmul_gflops": matmul_gflops,
        "frame_vote_s": vote_s,
        "kernel_gflop_per_frame": flops / 1e9,
        "kernel_gflops": flops / vote_s / 1e9,
        "efficiency": flops / vote_s / 1e9 / matmul_gflops,
        "torch_frame_vote_s": vote_s,
        "fused_frame_vote_s": fused_s,
        "fused_efficiency": None if fused_s is None else flops / fused_s / 1e9 / matmul_gflops,
        # the same time against the FLOPs a query needs (its own window only, no tile margin)
        "fused_useful_efficiency": None if fused_s is None else useful / fused_s / 1e9 / matmul_gflops,
        "in_window_fraction": useful / flops,
    }


def embedding_fps(model: str, n_frames: int = 8, precision: str | None = None, mirror: bool = False) -> float:
    """Frames per second of ``model.embed`` at 480p (automatic precision unless given;
    ``mirror``: each frame with its mirror image, ``TransferConfig(mirror=True)``)."""
    frames = _bear(n_frames).frames[:n_frames]
    m = sw.load_model(MODELS[model])
    m.embed(frames[:2], precision=precision, mirror=mirror)
    return n_frames / best_of(lambda: m.embed(frames, precision=precision, mirror=mirror), repeat=2)


# --------------------------------------------------------------------------- memory
class LoopedFrames:
    """``(n, H, W, 3)`` uint8 frames made on demand from a short synthetic clip played
    back and forth, so the benchmark itself holds 24 frames whatever ``n`` is."""

    def __init__(self, n_frames: int, height: int = 480, width: int = 854):
        self.clip = sw.synthetic_video(n_frames=24, n_objects=2, height=height, width=width, seed=0)
        self.shape = (n_frames, height, width, 3)
        self.dtype, self.ndim = np.dtype(np.uint8), 4

    def _index(self, i: int) -> int:
        period = 2 * (self.clip.n_frames - 1)
        i %= period
        return i if i < self.clip.n_frames else period - i

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.clip.frames[self._index(int(key))]
        indices = range(*key.indices(len(self))) if isinstance(key, slice) else key
        return np.stack([self.clip.frames[self._index(int(i))] for i in indices])


def memory_child(n_frames: int, model: str, embed_all: bool) -> None:
    """One session: a mask on frame 0, one propagation over every frame; peak RSS.

    The looped frames repeat 24 distinct ones, so their embeddings are those of the 24:
    unless ``embed_all``, the network embeds the 24 (its activations count in the peak)
    and the cache is filled from them -- the same values, without an hour of CPU.
    """
    frames = LoopedFrames(n_frames)
    start = time.perf_counter()
    session = InteractiveSession(frames, model=MODELS[model])
    cache = session.cache
    if not embed_all:
        base = cache.model.embed(frames.clip.frames, batch_size=cache.batch_size)
        for i in range(n_frames):
            cache.put(i, base[frames._index(i)])
        del base
    session.add_mask(0, frames.clip.masks[0])
    session.propagate()
    record = session.history[-1]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "frames": n_frames,
        "model": model,
        "peak_rss_gib": peak_kib / 2**20,
        "embeddings_gib": session.cache.nbytes / 2**30,
        "all_frames_embedded": embed_all,
        "seconds": time.perf_counter() - start,
        "round_s": record.seconds,
    }))


def memory(n_frames: int, model: str, embed_all: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n_frames), "--model", model]
        + (["--embed-all"] if embed_all else []),
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        return {"frames": n_frames, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# Label transfer benchmark ({result['date']})",
        "",
        f"Machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, {m['torch_threads']} torch "
        f"threads, torch {m['torch']}, Python {m['python']}, {m['device']}. Load average at start "
        f"{m['load_average_start']}, at end {m.get('load_average_end')} (shared machines slow every figure).",
        "",
        f"Command: `{result['command']}`"
        + (f"; figures of the parts not rerun come from `{result['earlier_parts']['command']}` "
           f"({result['earlier_parts']['date']}, load {result['earlier_parts']['load_average']})"
           if result.get("earlier_parts") else ""),
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]

    def row(name, value, target, met):
        lines.append(f"| {name} | {value} | {target} | {'yes' if met else 'no' if met is not None else ''} |")

    def beside(cr, key):
        """The plain-torch figure of the same run, and the issue's 'today' for the default model."""
        parts = []
        if cr.get(f"torch_{key}") is not None:
            parts.append(f"torch kernels, same run: {cr[f'torch_{key}']:.2f} s")
        if cr["model"] == "default" and key in ISSUE_TODAY:
            parts.append(f"issue 14's today: {ISSUE_TODAY[key]:.1f} s")
        return f" ({'; '.join(parts)})" if parts else ""

    for cr in result["correction_round"]:
        label = f"{cr['frames']} frames {cr['size'][1]}x{cr['size'][0]}, {cr['model']} (stride {cr['stride']})"
        row(f"correction round, cached embeddings, {label}", f"{cr['round_cached_s']:.2f} s" + beside(cr, "round_cached_s"),
            "<= 1.0 s", cr["round_cached_s"] <= TARGETS["round_cached_s"])
        row(f"first round, embedding included ({cr['embed_s']:.1f} s of it), {label}",
            f"{cr['first_round_s']:.2f} s" + beside(cr, "first_round_s"),
            "<= 10 s", cr["first_round_s"] <= TARGETS["first_round_s"])
        if "preview_s" in cr:
            row(f"app: mask of the frame on screen after Propagate (the corrected frame's preview), {label}",
                f"{cr['preview_s']:.2f} s", "<= 0.5 s", cr["preview_s"] <= TARGETS["preview_s"])
        if "repeat_same_references_s" in cr:
            row(f"same references again (nothing new to match), {label}",
                f"{cr['repeat_same_references_s']:.2f} s", "", None)
        row(f"correction round with re-embedding, {label}",
            f"{cr['round_with_embedding_s']:.2f} s (x{cr['ratio_with_embedding']:.1f})", "", None)
    k = result.get("kernel") or {}
    if k and k.get("fused_efficiency") is not None:
        useful = k.get("fused_useful_efficiency")
        useful = "" if useful is None else f"; counting only each query's own window: {100 * useful:.0f} %"
        row("transfer kernel as the engine runs it on a CPU (numba global top-k, window match and vote; "
            "same frame and FLOP count as the torch row) vs the same matmul",
            f"{k['kernel_gflop_per_frame'] / k['fused_frame_vote_s']:.1f} / {k['matmul_gflops']:.1f} GFLOP/s = "
            f"{100 * k['fused_efficiency']:.0f} % (torch kernels: {100 * k['efficiency']:.0f} %{useful})",
            ">= 50 %", k["fused_efficiency"] >= TARGETS["kernel_efficiency"])
    if k:
        row(f"transfer kernel ({k['model']}, one frame {k['grid'][0]}x{k['grid'][1]} cells, "
            f"{k['kernel_gflop_per_frame']:.1f} GFLOP) vs plain fp32 matmul",
            f"{k['kernel_gflops']:.1f} / {k['matmul_gflops']:.1f} GFLOP/s = {100 * k['efficiency']:.0f} % "
            f"(issue 14's today: {100 * ISSUE_TODAY['kernel_efficiency']:.0f} %)",
            ">= 50 %", k["efficiency"] >= TARGETS["kernel_efficiency"])
    for name, fps in result["embedding_fps"].items():
        if name in MODELS and name != "baseline" and result.get("embedding_precision"):
            name_shown = f"{name} ({result['embedding_precision']}, automatic)"
        else:
            name_shown = name
        row(f"embedding at 480p, {name_shown}", f"{fps:.2f} frames/s", ">= 5" if name == "default" else "",
            fps >= TARGETS["embedding_fps_default"] if name == "default" else None)
    if result.get("memory_command"):
        lines.append(f"| memory rows measured with | `{result['memory_command']}` | | |")
    for mem in result["memory"]:
        if "error" in mem:
            row(f"peak RSS, session on {mem['frames']} synthetic 480p frames", f"failed: {mem['error']}", "", False)
            continue
        target = TARGETS["rss_100_gib"] if mem["frames"] <= 100 else TARGETS["rss_1000_gib"]
        how = "every frame embedded" if mem.get("all_frames_embedded") else "24 distinct frames embedded, reused"
        row(f"peak RSS, session on {mem['frames']} synthetic 480p frames ({mem.get('model', result['memory_model'])}; "
            f"fp16 embeddings {mem['embeddings_gib']:.2f} GiB; {how})", f"{mem['peak_rss_gib']:.2f} GiB",
            f"<= {target:g} GiB", mem["peak_rss_gib"] <= target)
    for cr in result["correction_round"]:
        if "profile" in cr:
            total = sum(cr["profile"].values())
            lines += ["", f"Where a cached round goes ({cr['model']}, torch.profiler self CPU time, {total:.1f} s):", ""]
            lines += [f"- {name}: {s:.2f} s ({100 * s / total:.0f} %)" for name, s in cr["profile"].items()]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rounds = result["correction_round"]
    names = [f"{r['model']}\n(stride {r['stride']})" for r in rounds]
    x = np.arange(len(rounds))
    axes[0].bar(x - 0.2, [r["round_cached_s"] for r in rounds], 0.4, label="cached embeddings")
    axes[0].bar(x + 0.2, [r["round_with_embedding_s"] for r in rounds], 0.4, label="with re-embedding")
    axes[0].axhline(1.0, color="k", ls="--", lw=1, label="target 1 s")
    axes[0].set_xticks(x, names)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("seconds")
    axes[0].set_title(f"correction round, {rounds[0]['frames']} frames 480p")
    axes[0].legend(fontsize=8)
    fps = result["embedding_fps"]
    axes[1].bar(list(fps), list(fps.values()), color="tab:green")
    axes[1].axhline(5.0, color="k", ls="--", lw=1, label="target (default)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("frames / s")
    axes[1].set_title("embedding at 480p")
    axes[1].legend(fontsize=8)
    mem = [m for m in result["memory"] if "error" not in m]
    for model in sorted({m.get("model", result["memory_model"]) for m in mem}):
        rows = [m for m in mem if m.get("model", result["memory_model"]) == model]
        axes[2].plot([m["frames"] for m in rows], [m["peak_rss_gib"] for m in rows], "o-", label=f"peak RSS, {model}")
        axes[2].plot([m["frames"] for m in rows], [m["embeddings_gib"] for m in rows], "s--",
                     label=f"fp16 embeddings, {model}")
    if mem:
        axes[2].plot([100, 1000], [2, 4], "k+", ms=12, label="targets")
        axes[2].set_xlabel("frames")
        axes[2].set_ylabel("GiB")
        axes[2].legend(fontsize=7)
    axes[2].set_title("session memory, 480p")
    k = result.get("kernel") or {}
    kernel = f"; kernel {k['kernel_gflops']:.0f} GFLOP/s = {100 * k['efficiency']:.0f} % of matmul" if k else ""
    fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['torch_threads']} threads, load "
                 f"{result['machine']['load_average_start'][0]}{kernel}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80, help="frames of bear in the correction round")
    parser.add_argument("--models", default="default,effnet-lite0-s4", help="models timed in the correction round")
    parser.add_argument("--memory", default="100,400,1000", help="comma-separated frame counts ('' to skip)")
    parser.add_argument("--memory-model", default="default")
    parser.add_argument("--quick", action="store_true", help="24 frames, memory at 100 frames only")
    parser.add_argument("--profile", action="store_true", help="operator breakdown of a cached round")
    parser.add_argument("--out", default=str(RESULTS), help="folder for transfer.{json,md,png}")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated parts to run (kernel,rounds,fps,memory); the others keep "
                             "their figures from the existing transfer.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite transfer.md/png from transfer.json")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--embed-all", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embed-all-up-to", type=int, default=100,
                        help="memory runs up to this many frames embed every frame (longer ones reuse)")
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.model, args.embed_all)
        return
    if args.quick:
        args.frames, args.memory = min(args.frames, 24), "100"
    parts = set(args.parts.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "transfer.json"
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
              "command": "python benchmarks/bench_transfer.py " + " ".join(sys.argv[1:]), "targets": TARGETS,
              "kernel": None, "correction_round": [], "embedding_fps": {}, "memory_model": args.memory_model,
              "memory": []}
    if (parts != set(PARTS) or args.report_only) and previous.exists():
        # keep the figures of the parts not rerun, each with the run that measured it
        old = json.loads(previous.read_text())
        if args.report_only:
            result = old
        else:
            result["earlier_parts"] = {"command": old.get("command"), "date": old.get("date"),
                                       "load_average": [old["machine"].get("load_average_start"),
                                                        old["machine"].get("load_average_end")]}
            for part, key in PARTS.items():
                if part not in parts:
                    result[key] = old.get(key, result[key])
            if "memory" not in parts and old.get("memory_command"):
                result["memory_command"] = old["memory_command"]
            if "memory" in parts:  # rows of other sizes or models stay
                sizes = {int(x) for x in args.memory.split(",") if x}
                result["memory"] = [row for row in old.get("memory", [])
                                    if (row["frames"], row.get("model", old.get("memory_model"))) not in
                                    {(n, args.memory_model) for n in sizes}]

    def save(final: bool = False) -> None:
        """Written after every part, so a long run interrupted late keeps what it measured."""
        if not args.report_only:
            result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            result["complete"] = final
            previous.write_text(json.dumps(result, indent=2) + "\n")
        if final:
            (out / "transfer.md").write_text(markdown(result))
            plot(result, out / "transfer.png")

    if args.report_only:
        save(final=True)
        print(markdown(result))
        return
    print("machine:", json.dumps(result["machine"]), flush=True)
    if "kernel" in parts:
        result["kernel"] = kernel_efficiency()
        print("kernel:", json.dumps(result["kernel"]), flush=True)
        save()
    if "rounds" in parts:
        for model in [m for m in args.models.split(",") if m]:
            row = correction_round(model, args.frames, profile=args.profile and model == "default")
            result["correction_round"].append(row)
            print("correction round:", json.dumps(row), flush=True)
            save()
    if "fps" in parts:
        from simwidgets.device import autocast_dtype, precision_name

        automatic = precision_name(autocast_dtype(sw.pick_device()))
        runs = [(name, None, False, name) for name in MODELS]
        runs.append(("default", None, True, "default with its mirror image"))
        if automatic != "fp32":  # the learned models in float32 as well, for the ratio
            runs += [(name, "fp32", False, f"{name} (fp32)") for name in MODELS if name != "baseline"]
        result["embedding_precision"] = automatic
        for name, precision, mirror, label in runs:
            result["embedding_fps"][label] = embedding_fps(name, precision=precision, mirror=mirror)
            print(f"embedding fps at 480p, {label}: {result['embedding_fps'][label]:.2f}", flush=True)
        save()
    if "memory" in parts:
        for n in [int(x) for x in args.memory.split(",") if x]:
            result["memory"].append(memory(n, args.memory_model, n <= args.embed_all_up_to))
            result["memory"].sort(key=lambda row: (row.get("model", args.memory_model) != "default", row["frames"]))
            print("memory:", json.dumps(result["memory"][-1]), flush=True)
            save()
    save(final=True)
    print(markdown(result))


if __name__ == "__main__":
    main()
