"""Command line: ``python -m simwidgets {propagate,evaluate,train} ...``.

Headless counterparts of the notebooks, for batch runs and benchmarks.  Bad arguments
(missing folder, unknown sequence, a mask of the wrong size...) end with a one-line
``error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import BadInputError

__all__ = ["main", "build_parser"]


def _add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("label transfer")
    group.add_argument("--model", default="default",
                       help="'default' (shipped model), 'baseline', 'untrained' or a checkpoint path")
    group.add_argument("--top-k", type=int, default=None, help="nearest references that vote")
    group.add_argument("--temperature", type=float, default=None, help="softmax temperature of the votes")
    group.add_argument("--no-temporal", action="store_true", help="label each frame from the references only")
    group.add_argument("--window", type=int, default=None, help="context window radius in grid cells")
    group.add_argument("--n-context", type=int, default=None, help="previous frames used as context")
    group.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                       help="network precision (default auto: fp16 on CUDA, bf16 on CPUs that have it in "
                            "hardware, else fp32); sets $SIMWIDGETS_PRECISION")


def _transfer_config(args):
    from .transfer import TransferConfig

    overrides = {
        "top_k": args.top_k,
        "temperature": args.temperature,
        "window": args.window,
        "n_context": args.n_context,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_temporal:
        overrides["temporal"] = False
    return TransferConfig(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simwidgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    prop = commands.add_parser("propagate", help="segment one sequence from scribbles or its first mask")
    prop.add_argument("--davis-root", required=True, type=Path)
    prop.add_argument("--sequence", required=True)
    source = prop.add_mutually_exclusive_group(required=True)
    source.add_argument("--scribbles", type=Path, help="a DAVIS scribble JSON file")
    source.add_argument("--first-mask", action="store_true", help="use the ground-truth mask of frame 0")
    prop.add_argument("--out", required=True, type=Path, help="folder for the %%05d.png masks")
    _add_transfer_arguments(prop)

    ev = commands.add_parser("evaluate", help="J, F and J&F over sequences")
    ev.add_argument("--davis-root", required=True, type=Path)
    ev.add_argument("--sequences", default=None, help="comma-separated names (default: all)")
    ev.add_argument("--protocol", choices=["semi", "interactive"], default="semi")
    ev.add_argument("--interactions", type=int, default=8, help="interactive protocol: rounds")
    ev.add_argument("--save-masks", type=Path, default=None, help="write DIR/<seq>/%%05d.png")
    ev.add_argument("--json", required=True, type=Path, help="where to write the results")
    _add_transfer_arguments(ev)

    try:
        from .training import add_train_arguments  # provided by the training module
    except ImportError:
        add_train_arguments = None
    if add_train_arguments is not None:
        tr = commands.add_parser("train", help="train an embedding network on DAVIS-layout folders")
        add_train_arguments(tr)
    return parser


def _write_masks(masks, folder: Path) -> None:
    from .palette import save_indexed_png

    folder.mkdir(parents=True, exist_ok=True)
    for frame_idx, mask in enumerate(masks):
        save_indexed_png(mask, folder / f"{frame_idx:05d}.png")


def cmd_propagate(args) -> int:
    from .device import describe_device
    from .scribbles import Scribbles
    from .transfer import LabelTransfer
    from .video import load_davis_sequence

    video = load_davis_sequence(args.davis_root, args.sequence, lazy=True)
    if args.first_mask:
        if video.masks is None:
            raise BadInputError(f"--first-mask: sequence {args.sequence!r} has no Annotations folder")
        references = {0: video.masks[0]}
    else:
        references = Scribbles.load(args.scribbles, n_frames=video.n_frames)
    engine = LabelTransfer(video.frames, model=args.model, config=_transfer_config(args), device=args.device)
    print(f"device: {describe_device(engine.device)}; model: {engine.model.arch} (stride {engine.stride})")
    start = time.perf_counter()
    result = engine.propagate(references)
    seconds = time.perf_counter() - start
    _write_masks(result.masks, args.out)
    print(
        f"{args.sequence}: {video.n_frames} frames in {seconds:.2f} s "
        f"({seconds / video.n_frames:.3f} s per frame, embedding included); masks in {args.out}"
    )
    return 0


def evaluate_semi(davis_root, sequences, model="default", config=None, device=None, save_masks=None,
                  progress=None) -> dict:
    """Semi-supervised protocol: frame-0 ground truth -> all frames, scored on frames 1..T-1."""
    from .metrics import evaluate_masks
    from .models import load_model
    from .transfer import LabelTransfer
    from .video import list_sequences, load_davis_sequence

    model = load_model(model)
    names = sequences or list_sequences(davis_root)
    results = {}
    for name in names:
        video = load_davis_sequence(davis_root, name, lazy=True)
        if video.masks is None:
            raise BadInputError(f"sequence {name!r} has no ground-truth masks to evaluate against")
        start = time.perf_counter()
        engine = LabelTransfer(video.frames, model=model, config=config, device=device)
        result = engine.propagate({0: video.masks[0]})
        seconds = time.perf_counter() - start
        scores = evaluate_masks(result.masks[1:], video.masks[1:])
        results[name] = {
            "J": scores.j_mean,
            "F": scores.f_mean,
            "J&F": scores.jf_mean,
            "n_frames": video.n_frames,
            "seconds": seconds,
            "seconds_per_frame": seconds / video.n_frames,
        }
        if save_masks is not None:
            _write_masks(result.masks, Path(save_masks) / name)
        if progress:
            progress(name, results[name])
    keys = ("J", "F", "J&F", "seconds_per_frame")
    mean = {k: float(sum(r[k] for r in results.values()) / len(results)) for k in keys}
    return {"sequences": results, "mean": mean}


def cmd_evaluate(args) -> int:
    from dataclasses import asdict

    from .device import describe_device, pick_device
    from .video import list_sequences

    names = [s for s in args.sequences.split(",") if s] if args.sequences else list_sequences(args.davis_root)
    known = set(list_sequences(args.davis_root))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInputError(f"unknown sequence(s) {', '.join(unknown)} in {args.davis_root}")
    config = _transfer_config(args)

    def report(name, row):
        print(f"{name:20s} J={row['J']:.3f} F={row['F']:.3f} J&F={row['J&F']:.3f} "
              f"{row['seconds_per_frame']:.3f} s/frame", flush=True)

    if args.protocol == "semi":
        output = evaluate_semi(args.davis_root, names, model=args.model, config=config, device=args.device,
                               save_masks=args.save_masks, progress=report)
    else:
        try:
            from .protocol import evaluate_interactive
        except ImportError:
            raise BadInputError("--protocol interactive is not available in this version") from None
        output = evaluate_interactive(args.davis_root, names, model=args.model, config=config, device=args.device,
                                      interactions=args.interactions, save_masks=args.save_masks, progress=report)
    output.update(
        protocol=args.protocol,
        model=str(args.model),
        config=asdict(config),
        device=describe_device(pick_device(args.device)),
        davis_root=str(args.davis_root),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2))
    mean = output["mean"]
    print("mean " + " ".join(f"{k}={v:.3f}" for k, v in mean.items()) + f"; results in {args.json}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "precision", None):
        from .device import PRECISION_ENV_VAR

        os.environ[PRECISION_ENV_VAR] = args.precision
    try:
        if args.command == "propagate":
            return cmd_propagate(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "train":
            from .training import run_train

            run_train(args)
            return 0
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2
