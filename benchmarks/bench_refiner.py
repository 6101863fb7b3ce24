"""A learned boundary refiner, measured against the guided filter on the k-fold scheme (issue 15).

    .venv/bin/python benchmarks/bench_refiner.py --models "runs/kfold/fold{fold}-frozen-s8.pt" \
        [--folds 0,1] [--steps 800 --width 16 --context 32 --crop 96] [--label r800] \
        [--scores runs/refiner_scores] [--out benchmarks/results/kfold_refiner.json]

The issue names a learned refinement head as the obvious lever for boundaries.  This is one,
trained the way segmentation refiners are (a coarse mask and the image in, the true mask
out), on exactly what it would have to correct: the transfer's grid scores on video its
embedding never saw.  Every sequence is labelled from frame 0's true mask by the fold model
that held it out (``TransferConfig.for_masks()``, the shipped mask options; the scores are
cached under ``--scores``); the refiner of fold I learns from the other folds' sequences
and is scored on fold I's, against the shipped guided filter on the very same scores.

The network (about 40 thousand weights at width 16) reads, at half resolution, the frame,
the object's score guided-filter upsampled and the same score upsampled bilinearly, and
returns ``gain * guided + correction``: untrained, it is the guided filter.  Half
resolution: DAVIS's F tolerates boundaries about 8 px off at 480p.  Crops are drawn mostly
around the true or the guided boundary; the loss is the binary cross-entropy against the
share of each half-resolution pixel inside the object.

Measured 2026-12-07 (``benchmarks/results/kfold_refiner.md``): it does not beat the guided
filter, so nothing of it ships.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from simwidgets.errors import BadInputError  # noqa: E402
from simwidgets.evaluation.metrics import evaluate_masks  # noqa: E402
from simwidgets.models import load_model  # noqa: E402
from simwidgets.training import kfold_splits  # noqa: E402
from simwidgets.transfer import LabelTransfer, TransferConfig  # noqa: E402
from simwidgets.transfer.refine import guided_upsample  # noqa: E402
from simwidgets.video import list_sequences, load_davis_sequence  # noqa: E402

from bench_transfer import machine  # noqa: E402
from paired import paired_difference  # noqa: E402

#: the refiner works on frames downsampled by this factor
REFINER_SCALE = 2
#: colour normalisation of the frame channels
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class BoundaryRefiner(nn.Module):
    """Frame + one object's coarse score -> that object's logit, all at half resolution.

    A two-level encoder-decoder: a stride-1 branch keeps the edges, a stride-2 branch with
    dilated convolutions sees about 60 half-resolution pixels around each one (120 px of
    the frame, more than a grid cell's uncertainty), and the decoder combines them.  About
    40 thousand weights.
    """

    def __init__(self, width: int = 16, context: int = 32):
        super().__init__()
        self.width, self.context = int(width), int(context)
        self.fine = nn.Sequential(nn.Conv2d(5, width, 3, padding=1), nn.ReLU(inplace=True))
        self.down = nn.Sequential(nn.Conv2d(width, context, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.dilated = nn.Sequential(*[
            layer for d in (2, 4, 8)
            for layer in (nn.Conv2d(context, context, 3, padding=d, dilation=d), nn.ReLU(inplace=True))
        ])
        self.fuse = nn.Sequential(nn.Conv2d(width + context, width, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # logit = gain * guided score + correction; starts as the guided filter's sign
        self.gain = nn.Parameter(torch.tensor(8.0))

    def config(self) -> dict:
        return {"width": self.width, "context": self.context}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``(B, 5, h, w)`` from :func:`refiner_inputs` -> logits ``(B, 1, h, w)``."""
        fine = self.fine(inputs)
        coarse = self.dilated(self.down(fine))
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        correction = self.out(self.fuse(torch.cat([fine, coarse], 1)))
        return self.gain * inputs[:, 3:4] + correction


def _half(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, ceil(H/2), ceil(W/2))`` in [0, 1] by area averaging."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % REFINER_SCALE, (-width) % REFINER_SCALE
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, REFINER_SCALE)


def object_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """Grid scores ``(B, C, h, w)`` (background first) -> ``(B, C-1, h, w)``: each object's
    score minus the strongest other label's (for two labels, ``p1 - p0``)."""
    probabilities = probabilities.float()
    n_classes = probabilities.shape[1]
    if n_classes < 2:
        raise BadInputError("the refiner needs at least two labels (background and an object)")
    out = []
    for c in range(1, n_classes):
        others = torch.cat([probabilities[:, :c], probabilities[:, c + 1:]], 1).amax(1, keepdim=True)
        out.append(probabilities[:, c:c + 1] - others)
    return torch.cat(out, 1)


def refiner_inputs(scores: torch.Tensor, frames, stride: int, radius: int = 2, eps: float = 1e-4) -> torch.Tensor:
    """The refiner's inputs for every (frame, object): ``(B * K, 5, ceil(H/2), ceil(W/2))``.

    ``scores`` ``(B, K, h, w)`` object scores on the embedding grid (:func:`object_scores`),
    ``frames`` uint8 ``(B, H, W, 3)``, ``stride`` the model's; ``radius`` and ``eps`` the
    guided filter's (the transfer's ``refine_radius`` and ``refine_eps``).  The guided filter
    runs on the half-resolution frame with half the stride, so its window covers the same
    part of the frame as at full resolution.  Rows are frame-major: frame 0's objects first.
    """
    if stride % REFINER_SCALE:
        raise BadInputError(f"the refiner needs an even model stride; got {stride}")
    frames = np.asarray(frames)
    batch, n_objects = scores.shape[:2]
    image = _half(frames)  # (B, 3, h2, w2)
    h2, w2 = image.shape[-2:]
    half_frames = (image.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
    scores = scores.float().cpu()
    guided = guided_upsample(scores, half_frames, stride // REFINER_SCALE, radius, eps)  # (B, K, h2, w2)
    size = (scores.shape[-2] * stride // REFINER_SCALE, scores.shape[-1] * stride // REFINER_SCALE)
    bilinear = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)[..., :h2, :w2]
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    colour = ((image - mean) / std)[:, None].expand(batch, n_objects, 3, h2, w2)
    stacked = torch.cat([colour, guided[:, :, None], bilinear[:, :, None]], 2)
    return stacked.reshape(batch * n_objects, 5, h2, w2)


@torch.no_grad()
def refine_with(refiner: BoundaryRefiner, probabilities: torch.Tensor, frames, stride: int,
                radius: int = 2, eps: float = 1e-4) -> np.ndarray:
    """Class indices ``(B, H, W)`` uint8 from grid scores ``(B, C, h, w)`` (background first).

    Each object's logit map comes from the refiner, upsampled bilinearly to the frame; a
    pixel takes the object with the highest positive logit, background where none is
    positive."""
    frames = np.asarray(frames)
    batch, height, width = frames.shape[:3]
    scores = object_scores(probabilities)
    n_objects = scores.shape[1]
    refiner = refiner.eval()
    device = next(refiner.parameters()).device
    logits = refiner(refiner_inputs(scores, frames, stride, radius, eps).to(device)).float().cpu()
    logits = logits.view(batch, n_objects, *logits.shape[-2:])
    logits = F.interpolate(logits, scale_factor=REFINER_SCALE, mode="bilinear", align_corners=False)
    logits = logits[..., :height, :width]
    best, index = logits.max(1)
    return torch.where(best > 0, index + 1, torch.zeros_like(index)).to(torch.uint8).numpy()


@dataclass
class RefinerExamples:
    """One sequence's examples: ``inputs`` float16 ``(N, 5, h, w)`` and ``targets`` float16
    ``(N, 1, h, w)`` (share of each half-resolution pixel inside the object), one row per
    (frame, object)."""

    name: str
    inputs: torch.Tensor
    targets: torch.Tensor


def refiner_examples(name: str, frames, probabilities, masks, object_ids, stride: int,
                     frame_step: int = 2, radius: int = 2, eps: float = 1e-4, batch: int = 8) -> RefinerExamples:
    """Examples from one labelled sequence.

    ``frames`` uint8 ``(T, H, W, 3)``; ``probabilities`` ``(T, C, h, w)`` the transfer's grid
    scores (background first, channels in ``object_ids`` order); ``masks`` ``(T, H, W)`` the
    true object ids.  Frame 0 (the reference itself) is skipped; every ``frame_step``-th
    frame after it is kept (neighbouring frames teach nearly the same thing).
    """
    frames, masks = np.asarray(frames), np.asarray(masks)
    probabilities = torch.as_tensor(np.asarray(probabilities, dtype=np.float32))
    if not (len(frames) == len(masks) == len(probabilities)):
        raise BadInputError(f"{name}: frames, masks and scores differ in length "
                            f"({len(frames)}, {len(masks)}, {len(probabilities)})")
    if probabilities.shape[1] != len(object_ids) or int(object_ids[0]) != 0:
        raise BadInputError(f"{name}: scores must have one channel per id in object_ids, background (0) first")
    keep = list(range(1, len(frames), max(1, int(frame_step))))
    inputs, targets = [], []
    for start in range(0, len(keep), batch):
        idx = keep[start:start + batch]
        scores = object_scores(probabilities[idx])
        inputs.append(refiner_inputs(scores, frames[idx], stride, radius, eps).half())
        truth = torch.stack([torch.as_tensor(masks[idx] == int(k)) for k in object_ids[1:]], 1).float()
        height, width = truth.shape[-2:]
        truth = F.pad(truth, (0, (-width) % REFINER_SCALE, 0, (-height) % REFINER_SCALE))
        targets.append(F.avg_pool2d(truth, REFINER_SCALE).reshape(-1, 1, *inputs[-1].shape[-2:]).half())
    return RefinerExamples(name, torch.cat(inputs), torch.cat(targets))


def _boundary_centre(examples: RefinerExamples, generator: torch.Generator) -> tuple[int, int | None, int | None]:
    """A random row and a position on a boundary of its truth or of its guided prediction
    (``y`` and ``x`` None when the row has no boundary)."""
    row = int(torch.randint(len(examples.inputs), (1,), generator=generator))
    truth = examples.targets[row, 0].float() > 0.5
    guess = examples.inputs[row, 3].float() > 0
    edge = torch.zeros_like(truth)
    for mask in (truth, guess):
        edge |= mask ^ F.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0].bool()
    ys, xs = torch.nonzero(edge, as_tuple=True)
    if len(ys) == 0:
        return row, None, None
    pick = int(torch.randint(len(ys), (1,), generator=generator))
    return row, int(ys[pick]), int(xs[pick])


def _crop(tensor: torch.Tensor, y: int, x: int, size: int) -> torch.Tensor:
    height, width = tensor.shape[-2:]
    top = min(max(0, y - size // 2), max(0, height - size))
    left = min(max(0, x - size // 2), max(0, width - size))
    return tensor[..., top:top + size, left:left + size]


def train_refiner(examples: list[RefinerExamples], steps: int = 800, batch: int = 8, crop: int = 96,
                  lr: float = 2e-3, boundary_fraction: float = 0.75, seed: int = 0, width: int = 16,
                  context: int = 32, log_every: int = 100, log=print) -> tuple[BoundaryRefiner, dict]:
    """Train a :class:`BoundaryRefiner` on ``examples`` (AdamW, cosine schedule).

    Returns ``(refiner, record)``: the record holds the settings, the sequences, the loss
    every ``log_every`` steps and the wall time.
    """
    if not examples:
        raise BadInputError("no refiner examples to train on")
    for ex in examples:
        if min(ex.inputs.shape[-2:]) < crop:
            raise BadInputError(f"{ex.name}: frames of {tuple(ex.inputs.shape[-2:])} half-resolution pixels "
                                f"are smaller than the crop ({crop})")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    refiner = BoundaryRefiner(width, context)
    optimiser = torch.optim.AdamW(refiner.parameters(), lr=lr, weight_decay=1e-4)
    start, history, running = time.perf_counter(), [], []
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        picks = torch.randint(len(examples), (batch,), generator=generator).tolist()
        xs, ys = [], []
        for which in picks:
            ex = examples[which]
            on_edge = float(torch.rand(1, generator=generator)) < boundary_fraction
            if on_edge:
                row, y, x = _boundary_centre(ex, generator)
            else:
                row, y = int(torch.randint(len(ex.inputs), (1,), generator=generator)), None
            if y is None:
                height, width_ = ex.inputs.shape[-2:]
                y = int(torch.randint(height, (1,), generator=generator))
                x = int(torch.randint(width_, (1,), generator=generator))
            xs.append(_crop(ex.inputs[row], y, x, crop).float())
            ys.append(_crop(ex.targets[row], y, x, crop).float())
        inputs, targets = torch.stack(xs), torch.stack(ys)
        if float(torch.rand(1, generator=generator)) < 0.5:  # mirror: boundaries have no handedness
            inputs, targets = inputs.flip(-1), targets.flip(-1)
        loss = F.binary_cross_entropy_with_logits(refiner(inputs), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": float(np.mean(running)), "seconds": time.perf_counter() - start})
            running = []
            if log is not None:
                log(f"refiner step {step + 1}/{steps}  loss {history[-1]['loss']:.4f}  {history[-1]['seconds']:.0f} s")
    record = {"steps": steps, "batch": batch, "crop": crop, "lr": lr, "boundary_fraction": boundary_fraction,
              "seed": seed, "sequences": sorted(ex.name for ex in examples), "history": history,
              "seconds": time.perf_counter() - start, "torch": str(torch.__version__)}
    return refiner.eval(), record


def held_out_scores(video, model_of, cache: Path) -> dict:
    """The transfer's grid scores on ``video`` (frames and masks loaded) from frame 0's true
    mask, cached in ``cache``; ``model_of()`` gives the model that did not see it, loaded only
    when the cache has no file yet."""
    file = cache / f"{video.name}.npz"
    if not file.exists():
        frames, masks = np.asarray(video.frames), np.asarray(video.masks)
        model = model_of()
        result = LabelTransfer(frames, model=model, config=TransferConfig.for_masks()).propagate({0: masks[0]})
        probs = torch.stack([p.float().cpu() for p in result.probabilities]).numpy().astype(np.float16)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(file, probs=probs, masks=result.masks, object_ids=np.array(result.object_ids),
                            stride=model.stride)
    data = np.load(file)
    return {k: data[k] for k in data.files}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="fold models, a path with {fold} in it")
    parser.add_argument("--davis-root", type=Path, default=REPO.parent / "shared" / "data" / "davis2016")
    parser.add_argument("--folds", default=None, help="comma-separated folds to score (default: all)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--label", default=None, help="the refiner's name in the report (default from its settings)")
    parser.add_argument("--scores", type=Path, default=REPO / "runs" / "refiner_scores")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kfold_refiner.json")
    args = parser.parse_args(argv)
    label = args.label or f"w{args.width}-c{args.context}-crop{args.crop}-{args.steps}"
    splits = kfold_splits(list_sequences(args.davis_root), 5, 0)
    wanted = range(5) if args.folds is None else [int(f) for f in args.folds.split(",")]
    report = json.loads(args.out.read_text()) if args.out.exists() else {"refiners": {}}
    report.update(machine=machine(), transfer_options="TransferConfig.for_masks()", folds=[v for _, v in splits])
    settings = {k: getattr(args, k) for k in ("models", "steps", "width", "context", "crop")}
    entry = report["refiners"].setdefault(label, {"settings": settings, "sequences": {}})
    models = {}

    def model_of(fold):
        if fold not in models:
            models[fold] = load_model(args.models.format(fold=fold))
        return models[fold]

    def loaded(name):
        """``(frames, masks, held-out scores)`` of a sequence, read once."""
        video = load_davis_sequence(args.davis_root, name, lazy=False)
        data = held_out_scores(video, lambda: model_of(fold_of[name]), args.scores)
        return np.asarray(video.frames), np.asarray(video.masks), data

    fold_of = {name: f for f, (_, val) in enumerate(splits) for name in val}
    for fold in wanted:
        train, val = splits[fold]
        if all(name in entry["sequences"] for name in val):
            continue
        start = time.perf_counter()
        examples = []
        for name in train:
            frames, masks, data = loaded(name)
            examples.append(refiner_examples(name, frames, data["probs"], masks, data["object_ids"],
                                             int(data["stride"])))
        refiner, record = train_refiner(examples, steps=args.steps, width=args.width, context=args.context,
                                        crop=args.crop)
        del examples
        entry.setdefault("training", {})[str(fold)] = {"seconds": time.perf_counter() - start,
                                                       "final_loss": record["history"][-1]["loss"]}
        for name in val:
            frames, masks, data = loaded(name)
            tick = time.perf_counter()
            pred = np.concatenate([
                refine_with(refiner, torch.as_tensor(data["probs"][i:i + 8].astype(np.float32)), frames[i:i + 8],
                            int(data["stride"]))
                for i in range(0, len(frames), 8)])
            per_frame = (time.perf_counter() - tick) / len(frames)
            lut = np.asarray(data["object_ids"], dtype=np.uint8)
            guided = evaluate_masks(data["masks"][1:], masks[1:])
            learned = evaluate_masks(lut[pred[1:]], masks[1:])
            entry["sequences"][name] = {
                "fold": fold, "refiner_seconds_per_frame": per_frame,
                "guided": {"J": guided.j_mean, "F": guided.f_mean, "J&F": guided.jf_mean},
                "learned": {"J": learned.j_mean, "F": learned.f_mean, "J&F": learned.jf_mean}}
            print(f"  {label} fold {fold} {name:18s} J&F guided {guided.jf_mean:.3f} learned {learned.jf_mean:.3f}"
                  f"  ({per_frame * 1000:.0f} ms/frame)", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=1))
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


def _machine_text(m: dict) -> str:
    return (f"{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
            f"load average at the start {m.get('load_average_start')}")


def markdown(report: dict) -> str:
    lines = ["# A learned boundary refiner against the guided filter, 5-fold scheme (issue 15)", "",
             "Same grid scores for both (frame 0's true mask propagated by the fold model that held the sequence "
             "out, `TransferConfig.for_masks()`); the refiner of each fold trained on the other folds' sequences. "
             f"Machine: {_machine_text(report['machine'])}.", "",
             "| refiner | n | guided J / F / J&F | learned J / F / J&F | ΔJ | ΔF | ΔJ&F (± s.e.) | raises | ms/frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, entry in report["refiners"].items():
        rows = list(entry["sequences"].values())
        if not rows:
            continue
        mean = {side: {k: float(np.mean([r[side][k] for r in rows])) for k in ("J", "F", "J&F")}
                for side in ("guided", "learned")}
        d = {k: paired_difference([r["learned"][k] - r["guided"][k] for r in rows]) for k in ("J", "F", "J&F")}
        se = f" ± {d['J&F'][1]:.3f}" if d["J&F"][1] is not None else ""
        ms = 1000 * float(np.mean([r["refiner_seconds_per_frame"] for r in rows]))
        lines.append(f"| {label} | {len(rows)} | " + " / ".join(f"{mean['guided'][k]:.3f}" for k in ("J", "F", "J&F"))
                     + " | " + " / ".join(f"{mean['learned'][k]:.3f}" for k in ("J", "F", "J&F"))
                     + f" | {d['J'][0]:+.3f} | {d['F'][0]:+.3f} | {d['J&F'][0]:+.3f}{se} | {d['J&F'][2]} of {len(rows)}"
                     + f" | {ms:.0f} |")
    lines += ["", "| sequence | fold | " + " | ".join(f"{label}: guided → learned J&F" for label in report["refiners"])
              + " |", "|---|---|" + "---|" * len(report["refiners"])]
    names = sorted({n for e in report["refiners"].values() for n in e["sequences"]},
                   key=lambda n: (min(e["sequences"][n]["fold"] for e in report["refiners"].values()
                                      if n in e["sequences"]), n))
    for name in names:
        cells = []
        fold = None
        for entry in report["refiners"].values():
            row = entry["sequences"].get(name)
            if row is None:
                cells.append("")
                continue
            fold = row["fold"]
            cells.append(f"{row['guided']['J&F']:.3f} → {row['learned']['J&F']:.3f}")
        lines.append(f"| {name} | {fold} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
