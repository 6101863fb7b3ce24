"""The global match's top-k: torch matmul + topk against the fused numba kernel (issue 14).

    .venv/bin/python benchmarks/bench_knn.py [--frames 4] [--refs 512 2048] [--repeat 3] [--data random real] [--cpu-time]

For ``--frames`` frames of 25,680 query cells (one 480p frame at stride 4; the issue's
workload is 80 frames, so the seconds are also shown scaled to 80), ``D = 32``, ``k = 20``
and each number of references, times

* a plain fp32 matmul of the same shapes (``torch.mm(queries, keys.T)``),
* the torch path of the transfer (``knn.topk_global``: blocked matmul + ``torch.topk``),
* the fused kernel (``fused.topk_dot``),

each the best of ``--repeat`` runs, interleaved with runs of a large (4096 x 256) @ (256 x
4096) fp32 matmul whose best rate is the ceiling the others are compared with (the issue's
target: the fused kernel at >= 50 % of it).  Rates are ``2 D N Q`` flops per second; ns
per score is seconds / (N Q).  The machine is shared, so the load average is printed
beside every figure, and with ``--cpu-time`` everything also runs on one thread and is
timed by thread CPU time, which other jobs disturb much less than wall time.

``--data``: ``random`` unit vectors and/or ``real`` embeddings of the bear sample by the
default model (queries: frames 1.., references: random cells of frame 0).  Writes ``benchmarks/results/knn.md``
and ``knn.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simwidgets.transfer import fused, knn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = 25680  # 120 x 214


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def best_of(fns: dict, repeat: int, clock) -> dict:
    """Best time of each function, the functions interleaved round by round."""
    for fn in fns.values():
        fn()  # warm-up (and JIT compile)
    best = {name: float("inf") for name in fns}
    loads = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = clock()
            fn()
            best[name] = min(best[name], clock() - start)
            loads[name].append(load())
    return {name: (best[name], max(loads[name])) for name in fns}


def data(frames: int, n_refs: int, real: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if not real:
        queries = torch.nn.functional.normalize(torch.randn(frames * CELLS, 32, generator=gen), dim=1)
        keys = torch.nn.functional.normalize(torch.randn(n_refs, 32, generator=gen), dim=1)
        return queries, keys
    from simwidgets.models import load_model
    from simwidgets.video import load_sample

    model, video = load_model("default"), load_sample("bear")
    emb = model.embed(video.frames[: frames + 1])  # (T, D, h, w)
    cells = emb.permute(0, 2, 3, 1).reshape(emb.shape[0], -1, emb.shape[1])
    queries = cells[1:].reshape(-1, emb.shape[1]).contiguous()
    pick = torch.randperm(cells.shape[1], generator=gen)[:n_refs]
    return queries, cells[0, pick].contiguous()


def run(frames: int, refs, repeat: int, real: bool, cpu_time: bool, label: str):
    a, b = torch.randn(4096, 256), torch.randn(256, 4096)
    rows = []
    modes = [("wall", time.perf_counter, torch.get_num_threads())]
    if cpu_time:
        modes.append(("cpu1", time.thread_time, 1))
    for n_refs in refs:
        queries, keys = data(frames, n_refs, real)
        q, dim, k = queries.shape[0], queries.shape[1], 20
        prepared = fused.prepare_keys(keys)
        fns = {
            "large matmul (ceiling)": lambda: a @ b,
            "plain matmul, same shapes": lambda: torch.mm(queries, keys.T),
            "torch matmul + topk (knn.topk_global)": lambda: knn.topk_global(queries, keys, k),
            "fused numba (fused.topk_dot)": lambda: fused.topk_dot(queries, keys, k, prepared=prepared),
        }
        values, index = knn.topk_global(queries, keys, k)
        fv, fi = fused.topk_dot(queries, keys, k)
        exact = {"max_abs_value_diff": float((fv - values).abs().max()),
                 "index_agreement": float((fi == index).double().mean())}
        for mode, clock, threads in modes:
            old_t = torch.get_num_threads()
            old_n = fused.numba.get_num_threads() if fused.available() else None
            torch.set_num_threads(threads)
            if fused.available():
                fused.numba.set_num_threads(min(threads, fused.numba.config.NUMBA_NUM_THREADS))
            try:
                times = best_of(fns, repeat, clock)
            finally:
                torch.set_num_threads(old_t)
                if old_n is not None:
                    fused.numba.set_num_threads(old_n)
            ceiling_s = times["large matmul (ceiling)"][0]
            ceiling = 2 * 4096 * 256 * 4096 / ceiling_s / 1e9
            for name, (seconds, ld) in times.items():
                if name.startswith("large"):
                    flops, scores = 2 * 4096 * 256 * 4096, None
                else:
                    flops, scores = 2 * dim * n_refs * q, n_refs * q
                rate = flops / seconds / 1e9
                rows.append({
                    "data": label, "mode": mode, "threads": threads, "refs": n_refs, "queries": q, "kernel": name,
                    "seconds": seconds, "seconds_80_frames": None if scores is None else seconds * 80 / frames,
                    "gflops": rate, "pct_of_ceiling": 100 * rate / ceiling,
                    "ns_per_score": None if scores is None else 1e9 * seconds / scores, "load": ld,
                    **(exact if name.startswith("fused") else {}),
                })
    return rows


def table(rows) -> str:
    lines = ["| data | mode | N refs | kernel | s | s (80 frames) | GFLOP/s | % of large matmul | ns/score | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s80 = "" if r["seconds_80_frames"] is None else f"{r['seconds_80_frames']:.2f}"
        ns = "" if r["ns_per_score"] is None else f"{r['ns_per_score']:.2f}"
        lines.append(f"| {r['data']} | {r['mode']} ({r['threads']} thr) | {r['refs']} | {r['kernel']} | {r['seconds']:.3f} | {s80} | "
                     f"{r['gflops']:.1f} | {r['pct_of_ceiling']:.0f}% | {ns} | {r['load']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4, help="frames of 25,680 query cells (issue: 80)")
    parser.add_argument("--refs", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", nargs="+", choices=["random", "real"], default=["random"])
    parser.add_argument("--cpu-time", action="store_true", help="also time on one thread by thread CPU time")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    machine = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "numba": fused.numba.__version__ if fused.available() else None,
        "numba_threads": fused.numba.get_num_threads() if fused.available() else None,
        "load_average": os.getloadavg(),
    }
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with "
          f"{machine['torch_threads']} threads, numba {machine['numba']} with {machine['numba_threads']} threads")
    print(f"load average: {' '.join(f'{x:.2f}' for x in machine['load_average'])}")
    if not fused.available():
        print("numba is not installed: the fused kernel falls back to the torch path")
    start = time.perf_counter()
    fused.topk_dot(torch.randn(8, 32), torch.randn(8, 32), 4)
    machine["first_call_s"] = time.perf_counter() - start  # compile, or load from the cache
    print(f"first fused call (JIT compile or cache load): {machine['first_call_s']:.2f} s")
    rows = [r for label in args.data for r in run(args.frames, args.refs, args.repeat, label == "real", args.cpu_time, label)]
    text = table(rows)
    print(text)
    for r in rows:
        if r["kernel"].startswith("fused") and r["mode"] == "wall":
            print(f"{r['data']} N={r['refs']}: fused max |value diff| {r['max_abs_value_diff']:.2e}, "
                  f"index agreement {r['index_agreement']:.6f}")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        setup = {"frames": args.frames, "cells_per_frame": CELLS, "dim": 32, "k": 20, "data": args.data,
                 "repeat": args.repeat}
        (RESULTS / "knn.json").write_text(json.dumps({"machine": machine, "setup": setup, "rows": rows}, indent=1))
        head = (f"# Global match top-k: torch vs fused numba kernel (issue 14)\n\n"
                f"`{' '.join(['benchmarks/bench_knn.py'] + (argv if argv is not None else sys.argv[1:]))}`\n\n"
                f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
                f"({machine['torch_threads']} threads), numba {machine['numba']}; load average at start "
                f"{' '.join(f'{x:.2f}' for x in machine['load_average'])} (shared machine: the load column is the "
                f"1-minute load after each kernel's runs).\n\n"
                f"{args.frames} frames x {CELLS} query cells (data: {', '.join(args.data)}), "
                f"D = 32, k = 20, best of {args.repeat}; seconds also scaled to 80 frames. "
                f"`% of large matmul`: rate relative to a (4096x256)@(256x4096) fp32 matmul timed in the same rounds.\n\n")
        (RESULTS / "knn.md").write_text(head + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
