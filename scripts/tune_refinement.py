"""Choose the edge-aware upsampling's settings on the validation sequences (issue 15).

    .venv/bin/python scripts/tune_refinement.py --davis-root ../shared/data/davis2016 \
        --model data/models/default.pt --sequences dance-jump,breakdance-flare,... --max-frames 30

Propagates frame 0's mask once per sequence (the refinement does not change the grid
scores, only how they become full-resolution masks), then scores J and F apart for
bilinear upsampling and each guided-filter setting.  Prints one row per setting (mean and
per sequence) and writes them as JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simwidgets.evaluation.metrics import evaluate_masks  # noqa: E402
from simwidgets.models import load_model  # noqa: E402
from simwidgets.transfer import LabelTransfer  # noqa: E402
from simwidgets.transfer.refine import guided_upsample  # noqa: E402
from simwidgets.video import load_davis_sequence  # noqa: E402


def masks_from(probabilities, frames, stride, setting):
    probs = torch.stack(probabilities)
    height, width = frames.shape[1:3]
    diff = probs[:, 1:2] - probs[:, 0:1] if probs.shape[1] == 2 else probs
    out = []
    for start in range(0, len(probs), 8):
        chunk = diff[start : start + 8]
        if setting is None:
            size = (chunk.shape[-2] * stride, chunk.shape[-1] * stride)
            up = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)[..., :height, :width]
        else:
            up = guided_upsample(chunk, frames[start : start + 8], stride, *setting)
        out.append((up[:, 0] > 0).numpy() if up.shape[1] == 1 else up.argmax(1).numpy())
    return np.concatenate(out).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--davis-root", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--sequences", required=True)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--settings", default="none,1:1e-4,1:1e-3,1:1e-2,2:1e-3,2:1e-2,3:1e-3",
                        help="radius:eps pairs ('none' = bilinear)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    settings = [None if s == "none" else (int(s.split(":")[0]), float(s.split(":")[1]))
                for s in args.settings.split(",")]
    model = load_model(args.model)
    rows = {str(s): {} for s in settings}
    for name in args.sequences.split(","):
        video = load_davis_sequence(args.davis_root, name)
        frames, gt = video.frames, video.masks
        if args.max_frames:
            frames, gt = frames[: args.max_frames], gt[: args.max_frames]
        frames = np.asarray(frames)
        start = time.perf_counter()
        result = LabelTransfer(frames, model=model).propagate({0: np.asarray(gt[0])})
        line = [f"{name:18s} ({time.perf_counter() - start:5.1f} s)"]
        for s in settings:
            t = time.perf_counter()
            masks = masks_from(result.probabilities, frames, model.stride, s)
            seconds = time.perf_counter() - t
            lut = np.asarray(result.object_ids, np.uint8)
            scores = evaluate_masks(lut[masks[1:]], np.asarray(gt[1:]))
            rows[str(s)][name] = {"J": scores.j_mean, "F": scores.f_mean, "J&F": scores.jf_mean,
                                  "finish_s_per_frame": seconds / len(frames)}
            line.append(f"{scores.j_mean:.3f}/{scores.f_mean:.3f}")
        print("  ".join(line), flush=True)
    print(f"\n{'setting':12s} {'J':>6s} {'F':>6s} {'J&F':>6s}  s/frame")
    for s in settings:
        per = rows[str(s)].values()
        mean = {k: float(np.mean([r[k] for r in per])) for k in ("J", "F", "J&F", "finish_s_per_frame")}
        rows[str(s)]["mean"] = mean
        print(f"{str(s):12s} {mean['J']:.4f} {mean['F']:.4f} {mean['J&F']:.4f}  {mean['finish_s_per_frame']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
