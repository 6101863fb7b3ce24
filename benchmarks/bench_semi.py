"""Semi-supervised J and F on the validation scheme, for several models (issue 15).

    .venv/bin/python benchmarks/bench_semi.py --models baseline,data/models/default.pt \
        [--davis-root ../shared/data/davis2016] [--max-frames N] [--out results/semi_validation.json]

The first scheme (``simwidgets.training.VALIDATION_SEQUENCES``, now replaced by the k-fold
scheme of ``bench_kfold.py``): nine DAVIS 2016 train sequences that the models shipped until
2026-12-02 were not trained on (the current default was); the
three demo sequences shipped in ``data/davis`` (bear, dog-agility, tennis) are never used
for training or choosing and are reported apart as the held-out test.  Frame 0's true mask
is propagated to every frame (``TransferConfig.for_masks()``); J and F are over frames
1..T of each sequence, means over sequences.  Prints per-sequence rows and the spread
(standard deviation over sequences) beside each mean, with the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simwidgets.evaluation import evaluate_semi_supervised  # noqa: E402
from simwidgets.training import SHIPPED_SAMPLES, VALIDATION_SEQUENCES  # noqa: E402
from simwidgets.video import load_davis_sequence  # noqa: E402

from bench_transfer import machine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def summarise(rows: dict, names) -> dict:
    picked = [rows[n] for n in names if n in rows]
    out = {"n": len(picked)}
    for key in ("J", "F", "J&F"):
        values = [r[key] for r in picked]
        out[key], out[key + "_std"] = float(np.mean(values)), float(np.std(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="comma-separated names or checkpoint paths")
    parser.add_argument("--davis-root", type=Path, default=REPO.parent / "shared" / "data" / "davis2016")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "semi_validation.json")
    args = parser.parse_args()
    report = json.loads(args.out.read_text()) if args.out.exists() else {"models": {}}
    report["machine"] = machine()
    report["scheme"] = {"validation": list(VALIDATION_SEQUENCES), "test": list(SHIPPED_SAMPLES),
                        "max_frames": args.max_frames}
    names = list(VALIDATION_SEQUENCES) + list(SHIPPED_SAMPLES)
    for model in args.models.split(","):
        start, load = time.perf_counter(), os.getloadavg()

        def progress(name, row):
            print(f"  {model:34s} {name:18s} J {row['J']:.3f}  F {row['F']:.3f}  J&F {row['J&F']:.3f}  "
                  f"{row['seconds_per_frame']:.2f} s/frame", flush=True)

        videos = (load_davis_sequence(args.davis_root, n, lazy=True) for n in names)
        result = evaluate_semi_supervised(videos, model, max_frames=args.max_frames, progress=progress)
        rows = result["sequences"]
        report["models"][model] = {
            "sequences": rows,
            "validation": summarise(rows, VALIDATION_SEQUENCES),
            "test": summarise(rows, SHIPPED_SAMPLES),
            "wall_seconds": time.perf_counter() - start,
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        for part in ("validation", "test"):
            s = report["models"][model][part]
            print(f"{model}: {part} ({s['n']}) J {s['J']:.3f}±{s['J_std']:.3f}  F {s['F']:.3f}±{s['F_std']:.3f}  "
                  f"J&F {s['J&F']:.3f}±{s['J&F_std']:.3f}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
