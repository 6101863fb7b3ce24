"""Speed and memory of the label transfer on this machine (issue: performance).

    .venv/bin/python benchmarks/bench_transfer.py [--model default] [--frames 80] [--memory 100,400]

Prints, and writes to benchmarks/results/transfer.{json,md}:

* correction round on a real 480p sequence (bear): new scribbles -> full-resolution masks
  of every frame, with cached embeddings and with re-embedding (target <= 1.0 s cached);
* embedding extraction in frames per second at 480p for the baseline and the model;
* the global kNN kernel's GFLOP/s against a plain fp32 matmul measured in the same run;
* peak resident memory of a propagation over N synthetic 480p frames (one subprocess each).
"""
from __future__ import annotations

import argparse
import json
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
from simwidgets.transfer import LabelTransfer, References, TransferConfig  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def correction_round(model: str, n_frames: int) -> dict:
    video = sw.load_sample("bear")
    start = min(max(0, 39 - n_frames // 2), max(0, video.n_frames - n_frames))  # official scribble: frame 39
    video = video.clip(start, min(video.n_frames, start + n_frames))
    frames, scribbles = video.frames, video.scribbles["001"]
    start = time.perf_counter()
    engine = LabelTransfer(frames, model=model)
    engine.cache.ensure()
    embed_seconds = time.perf_counter() - start
    engine.propagate(scribbles)  # warm-up
    cached = best_of(lambda: engine.propagate(scribbles), repeat=2)
    return {
        "frames": len(frames),
        "size": list(frames.shape[1:3]),
        "model": engine.model.arch,
        "stride": engine.stride,
        "round_cached_s": cached,
        "round_with_embedding_s": cached + embed_seconds,
        "ratio_to_1s_target": cached / 1.0,
    }


def embedding_fps(model: str, n_frames: int = 8) -> float:
    frames = sw.load_sample("bear").frames[:n_frames]
    m = sw.load_model(model)
    m.embed(frames[:2])
    return n_frames / best_of(lambda: m.embed(frames), repeat=2)


def kernel_efficiency() -> dict:
    torch.manual_seed(0)
    a, b = torch.randn(4096, 64), torch.randn(64, 100000)
    matmul_s = best_of(lambda: a @ b)
    matmul_gflops = 2 * a.shape[0] * a.shape[1] * b.shape[1] / matmul_s / 1e9
    # the transfer's global vote: 80 frames of a stride-8 480p grid against 2,048 references
    queries = torch.nn.functional.normalize(torch.randn(80 * 60 * 107, 64), dim=1)
    refs = References(torch.nn.functional.normalize(torch.randn(2048, 64), dim=1), torch.rand(2048, 2))
    config = TransferConfig()
    vote_s = best_of(lambda: LabelTransfer._topk_global(queries, refs, config.top_k), repeat=2)
    vote_gflops = 2 * queries.shape[0] * refs.embeddings.shape[0] * 64 / vote_s / 1e9
    return {
        "matmul_gflops": matmul_gflops,
        "knn_gflops": vote_gflops,
        "efficiency": vote_gflops / matmul_gflops,
    }


def memory_child(n_frames: int, model: str) -> None:
    video = sw.synthetic_video(n_frames=n_frames, n_objects=2, height=480, width=854, seed=0)
    engine = LabelTransfer(video.frames, model=model, config=TransferConfig(temporal=False))
    engine.propagate({0: video.masks[0]})
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": n_frames, "peak_rss_gib": peak_kib / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--memory", default="100", help="comma-separated frame counts ('' to skip)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.model)
        return
    torch.set_num_threads(torch.get_num_threads())
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {sw.describe_device()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    result["correction_round"] = correction_round(args.model, args.frames)
    print("correction round:", json.dumps(result["correction_round"]), flush=True)
    result["embedding_fps"] = {name: embedding_fps(name) for name in ("baseline", args.model)}
    print("embedding fps at 480p:", json.dumps(result["embedding_fps"]), flush=True)
    result["kernel"] = kernel_efficiency()
    print("kernel:", json.dumps(result["kernel"]), flush=True)
    result["memory"] = []
    for n in [int(x) for x in args.memory.split(",") if x]:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), "--model", args.model],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        result["memory"].append(json.loads(out))
        print("memory:", out, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps(result, indent=2))
    cr, k = result["correction_round"], result["kernel"]
    lines = [
        f"# Label transfer benchmark ({result['date']})",
        "",
        f"Machine: {result['machine']}",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| correction round, {cr['frames']} frames {cr['size'][1]}x{cr['size'][0]}, cached embeddings "
        f"({cr['model']}, stride {cr['stride']}) | {cr['round_cached_s']:.2f} s | <= 1.0 s |",
        f"| correction round with re-embedding | {cr['round_with_embedding_s']:.2f} s | |",
    ]
    for name, fps in result["embedding_fps"].items():
        lines.append(f"| embedding at 480p, {name} | {fps:.1f} frames/s | >= 5 (default) |")
    lines.append(f"| kNN kernel vs fp32 matmul | {k['knn_gflops']:.1f} / {k['matmul_gflops']:.1f} GFLOP/s "
                 f"= {100 * k['efficiency']:.0f} % | >= 50 % |")
    for row in result["memory"]:
        lines.append(f"| peak RSS, {row['frames']} frames 480p | {row['peak_rss_gib']:.2f} GiB | "
                     f"{'<= 2 GiB' if row['frames'] <= 100 else '<= 4 GiB'} |")
    (RESULTS / "transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
