"""Why the transfer kernel cannot reach half the matmul rate in torch (issue 7).

    .venv/bin/python benchmarks/bench_topk.py [--queries 25680] [--refs 1392] [--dim 32] [--k 20]

For one stride-4 frame's queries against a block of references, times the similarity
matmul and each way torch can select the top-k from its output, and prints them per score
in nanoseconds, beside a large fp32 matmul (the transfer benchmark's ceiling). At D = 32 a
score is 64 flops for 4 bytes written: the similarity matmul alone runs at a fraction of
the large matmul's rate, and selecting costs more per score than computing it, so an
unfused torch kernel stays far below half the ceiling.
"""
from __future__ import annotations

import argparse
import time

import torch


def best_ms(fn, repeat: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=25680, help="query cells (120 x 214: one 480p frame at stride 4)")
    parser.add_argument("--refs", type=int, default=1392)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, args.dim), dim=1)
    refs = torch.nn.functional.normalize(torch.randn(args.refs, args.dim), dim=1)
    scores = queries @ refs.T
    threshold = scores.topk(args.k, dim=1).values[:, -1:]
    n = scores.numel()
    rows = {
        "matmul (queries @ refs.T)": best_ms(lambda: queries @ refs.T),
        f"topk(k={args.k}) along rows": best_ms(lambda: scores.topk(args.k, dim=1)),
        "row maximum (amax)": best_ms(lambda: scores.amax(1)),
        "comparison with a per-row threshold": best_ms(lambda: scores > threshold),
        "comparison + nonzero": best_ms(lambda: (scores > threshold).nonzero()),
    }
    print(f"{args.queries} queries x {args.refs} references, D = {args.dim}, {torch.get_num_threads()} threads")
    for name, ms in rows.items():
        print(f"  {name:40s} {ms:8.1f} ms  {1e6 * ms / n:5.2f} ns per score")
    a, b = torch.randn(4096, 256), torch.randn(256, 4096)
    ceiling = 2 * 4096 * 256 * 4096 / (best_ms(lambda: a @ b) / 1000) / 1e9
    matmul = rows["matmul (queries @ refs.T)"]
    gflops = 2 * n * args.dim / (matmul / 1000) / 1e9
    print(f"  a large (4096 x 256) @ (256 x 4096) matmul: {ceiling:.0f} GFLOP/s (the benchmark's ceiling)")
    print(f"  the similarity matmul alone: {gflops:.0f} GFLOP/s = {gflops / ceiling:.0%} of it (with D = {args.dim} "
          f"each 4-byte score written costs only {2 * args.dim} flops)")
    for name in (f"topk(k={args.k}) along rows", "comparison + nonzero"):
        print(f"  matmul + {name}: {gflops * matmul / (matmul + rows[name]) / ceiling:.0%} of the ceiling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
