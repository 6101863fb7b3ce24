"""Command line: ``python -m simwidgets {propagate,evaluate,train,compile} ...``.

Headless counterparts of the notebooks, for batch runs and benchmarks.  Bad arguments
(missing folder, unknown sequence, an output path that is a file, a mask of the wrong
size...) end with a one-line ``error: ...`` and exit status 2, never a traceback; output
paths are checked before any work starts.  Building the parser imports neither torch nor
the models, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from .checks import output_file, output_folder
from .errors import BadInputError

__all__ = ["main", "build_parser"]


# ----------------------------------------------------------------------------- shared options

def _add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("label transfer")
    group.add_argument("--model", default="default",
                       help="'default' (shipped model), 'baseline', 'untrained' or a checkpoint path")
    group.add_argument("--top-k", type=int, default=None, help="nearest references that vote")
    group.add_argument("--temperature", type=float, default=None, help="softmax temperature of the votes")
    group.add_argument("--no-temporal", action="store_true", help="label each frame from the references only")
    group.add_argument("--window", type=int, default=None, help="context window radius in grid cells")
    group.add_argument("--n-context", type=int, default=None, help="previous frames used as context")
    group.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                       help="average each frame's features with its mirror image's (1.7-1.8x the network time; "
                            "default: on for full masks, off for scribbles)")
    group.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                       help="network precision (default auto: fp16 on CUDA, bf16 on CPUs that have it in "
                            "hardware, else fp32); sets $SIMWIDGETS_PRECISION")


def _transfer_config(args, masks: bool = False):
    """The options given; ``masks``: propagating full masks (``TransferConfig.for_masks``)."""
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
    if getattr(args, "mirror", None) is not None:
        overrides["mirror"] = args.mirror
    return TransferConfig.for_masks(**overrides) if masks else TransferConfig(**overrides)


def _mask_adapt(flag: bool | None, default: bool) -> dict | None:
    """``--adapt`` / ``--no-adapt`` / neither (``default``) as adapt_to_references options."""
    from .training.adapt import MASK_ADAPT

    return dict(MASK_ADAPT) if (default if flag is None else flag) else None


def _names(text: str | None, option: str) -> list[str] | None:
    """Comma-separated sequence names; None when the option was not given.  An option
    given with no name in it (``--sequences ","``) is an error, never "all"."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise BadInputError(f"{option} {text!r} names no sequence; leave the option out to use all of them")
    if len(set(names)) != len(names):
        raise BadInputError(f"{option} names a sequence twice: {text!r}")
    return names


def _known_sequences(root: Path, wanted: list[str] | None, option: str = "--sequences") -> list[str]:
    from .video import list_sequences

    known = list_sequences(root)
    if wanted is None:
        return known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise BadInputError(
            f"{option}: unknown sequence(s) {', '.join(unknown)} in {root} (known: {', '.join(known) or 'none'})"
        )
    return wanted


# ----------------------------------------------------------------------------- the parser

def _train_defaults() -> dict:
    from .training.config import TrainConfig  # torch-free

    return {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = _train_defaults()
    parser.add_argument("--davis-root", required=True, type=Path, help="DAVIS-layout folder with a mask for every frame")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (best validation score)")
    parser.add_argument("--arch", default=d["arch"], help="registered architecture (default %(default)s)")
    parser.add_argument("--dim", type=int, default=None, help="embedding dimension (architecture default when omitted)")
    parser.add_argument("--stride", type=int, default=None, help="output stride, 4 or 8")
    parser.add_argument("--top-stride", type=int, default=None,
                        help="effnet-lite0/mobilenetv2: deepest trunk level the head fuses, 16 (default) or 32 "
                             "(adds the last, most semantic stages)")
    parser.add_argument("--head-width", type=int, default=None,
                        help="effnet-lite0/mobilenetv2: channels of the fusion head (default 64)")
    parser.add_argument("--colour-weight", type=float, default=None,
                        help="effnet-lite0/mobilenetv2: append each cell's Lab colour with this initial learnable weight")
    parser.add_argument("--weights", default=d["weights"],
                        help="backbone initialisation: imagenet, none, or a state-dict file (default %(default)s)")
    parser.add_argument("--train-backbone", action="store_true", help="fine-tune the pretrained backbone too")
    parser.add_argument("--train-blocks", type=int, default=d["train_blocks"],
                        help="fine-tune only the top N blocks of the frozen backbone (BatchNorm statistics "
                             "stay fixed; default %(default)s)")
    parser.add_argument("--backbone-lr-scale", type=float, default=d["backbone_lr_scale"],
                        help="learning rate of fine-tuned trunk blocks relative to --lr (default %(default)s)")
    parser.add_argument("--steps", type=int, default=d["steps"], help="optimiser steps (default %(default)s)")
    parser.add_argument("--batch-pairs", type=int, default=d["batch_pairs"], help="frame pairs per step (default %(default)s)")
    parser.add_argument("--crop", type=int, default=d["crop"], help="square crop side in pixels (default %(default)s)")
    parser.add_argument("--loss", default=d["loss"],
                        help="pairwise (the paper's), contrastive, triplet or infonce (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d["lr"], help="AdamW learning rate (default %(default)s)")
    parser.add_argument("--hard-fraction", type=float, default=d["hard_fraction"],
                        help="share of negatives drawn next to the anchor's object (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--sequences", default=None, help="comma-separated sequences to use (default: all in the root)")
    parser.add_argument("--val-sequences", default=None,
                        help="comma-separated held-out sequences (default: the fixed split of "
                             "simwidgets.training.default_split)")
    parser.add_argument("--n-val", type=int, default=4, help="held-out sequences in the default split")
    parser.add_argument("--fold", default=None, metavar="I/K",
                        help="k-fold cross-validation: train on the other folds and validate on fold I of K "
                             "(simwidgets.training.kfold_splits over --sequences; the demo sequences are in no "
                             "fold); benchmarks/bench_kfold.py scores the K models")
    parser.add_argument("--fold-seed", type=int, default=0, help="shuffle of the sequences into folds")
    parser.add_argument("--val-every", type=int, default=d["val_every"])
    parser.add_argument("--val-max-frames", type=int, default=None)
    parser.add_argument("--val-scale", type=float, default=d["val_scale"])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps or auto")
    parser.add_argument("--history", type=Path, default=None,
                        help="also write the loss and validation history to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="write the resumable state (OUT's .state.pt) every N steps (default: never)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue the run saved in this .state.pt file exactly (its settings and "
                             "sequences are used; the training options given here are ignored)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simwidgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    prop = commands.add_parser("propagate", help="segment one sequence from scribbles or its first mask")
    prop.add_argument("--davis-root", required=True, type=Path)
    prop.add_argument("--sequence", required=True)
    source = prop.add_mutually_exclusive_group(required=True)
    source.add_argument("--scribbles", type=Path, help="a DAVIS scribble JSON file")
    source.add_argument("--first-mask", action="store_true", help="use the ground-truth mask of frame 0")
    source.add_argument("--masks", type=Path,
                        help="a folder of reference masks named by frame number (00040.png is frame 40)")
    prop.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=None,
                      help="fine-tune a copy of the model on the reference masks before the transfer "
                           "(simwidgets.training.adapt.MASK_ADAPT, a few seconds per reference frame; "
                           "+0.014 J&F on the 5-fold scheme from frame 0's mask); on by default with "
                           "--first-mask, off with --masks, not for --scribbles")
    prop.add_argument("--out", required=True, type=Path, help="folder for the %%05d.png masks")
    prop.add_argument("--coco", type=Path, default=None, help="also write the masks as COCO run-length JSON")
    prop.add_argument("--mp4", type=Path, default=None, help="also write an overlay video (H.264 MP4)")
    prop.add_argument("--gif", type=Path, default=None, help="also write an overlay animation (GIF)")
    _add_transfer_arguments(prop)

    ev = commands.add_parser("evaluate", help="J, F and J&F over sequences")
    ev.add_argument("--davis-root", required=True, type=Path)
    ev.add_argument("--sequences", default=None, help="comma-separated names (default: all)")
    ev.add_argument("--protocol", choices=["semi", "interactive"], default="semi")
    ev.add_argument("--interactions", type=int, default=8, help="interactive protocol: rounds")
    ev.add_argument("--save-masks", type=Path, default=None, help="write DIR/<seq>/%%05d.png")
    ev.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=None,
                    help="semi protocol: fine-tune a copy of the model on frame 0's mask before each sequence "
                         "(simwidgets.training.adapt.MASK_ADAPT; +0.014 J&F on the 5-fold scheme); on by "
                         "default for the semi protocol, --no-adapt scores the model alone")
    ev.add_argument("--json", required=True, type=Path, help="where to write the results")
    _add_transfer_arguments(ev)

    tr = commands.add_parser("train", help="train an embedding network on DAVIS-layout folders")
    _add_train_arguments(tr)

    co = commands.add_parser("compile", help="compile the embedding network for this CPU, once per frame size "
                                             "(later embeddings of that size run it)")
    co.add_argument("--model", default="default", help="'default' (shipped model) or a checkpoint path")
    co.add_argument("--size", default="480x854", help="frame size HEIGHTxWIDTH (default %(default)s, DAVIS 480p)")
    co.add_argument("--mirror", action="store_true", help="the network with mirror averaging (--mirror elsewhere)")
    co.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                    help="network precision (default auto); sets $SIMWIDGETS_PRECISION")
    return parser


# ----------------------------------------------------------------------------- compile

def _frame_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise BadInputError(f"--size must be HEIGHTxWIDTH in pixels, like 480x854; got {text!r}")
    return int(parts[0]), int(parts[1])


def cmd_compile(args) -> int:
    from .models import load_model
    from .models.compiled import package_path, precompile

    height, width = _frame_size(args.size)
    model = load_model(args.model)
    path = package_path(model, height, width, mirror=args.mirror)
    if path.is_file():
        print(f"already compiled: {path}")
        return 0
    start = time.perf_counter()
    path = precompile(model, height, width, mirror=args.mirror)
    print(f"compiled {args.model} for {height}x{width} frames{' with mirror averaging' if args.mirror else ''} "
          f"in {time.perf_counter() - start:.0f} s: {path}")
    return 0


# ----------------------------------------------------------------------------- propagate

def cmd_propagate(args) -> int:
    from . import export
    from .device import describe_device
    from .scribbles import Scribbles
    from .transfer import LabelTransfer
    from .video import load_davis_sequence, read_mask_folder

    if args.adapt and args.scribbles is not None:
        raise BadInputError("--adapt applies to masks (--first-mask, --masks); its setting was chosen on full "
                            "masks, not scribbles")
    output_folder(args.out, "--out")
    for option in ("coco", "mp4", "gif"):
        if getattr(args, option) is not None:
            output_file(getattr(args, option), f"--{option}")
    video = load_davis_sequence(args.davis_root, args.sequence, lazy=True)
    if args.first_mask:
        if video.masks is None:
            raise BadInputError(f"--first-mask: sequence {args.sequence!r} has no Annotations folder")
        references = {0: video.masks[0]}
    elif args.masks is not None:
        references = read_mask_folder(args.masks, n_frames=video.n_frames, size=video.size)
    else:
        references = Scribbles.load(args.scribbles, n_frames=video.n_frames)
    adapt = _mask_adapt(args.adapt, default=args.first_mask)
    config = _transfer_config(args, masks=args.scribbles is None)  # masks or a first mask: for_masks
    start = time.perf_counter()
    model = args.model
    if adapt is not None:
        from .models import load_model
        from .training.adapt import adapt_to_references

        model, info = adapt_to_references(load_model(model), video.frames, references,
                                          config=config, device=args.device, **adapt)
        if info["steps"]:
            print(f"adapted a copy of the model to the reference masks of frames {info['frames']}: "
                  f"{info['steps']} steps in {info['seconds']:.1f} s")
        else:
            adapt = None
            print("not adapted: the model has no weights to fine-tune, or the masks hold a single label")
    engine = LabelTransfer(video.frames, model=model, config=config, device=args.device)
    print(f"device: {describe_device(engine.device)}; model: {engine.model.arch} (stride {engine.stride})")
    result = engine.propagate(references)
    seconds = time.perf_counter() - start
    export.write_masks(result.masks, args.out)
    written = [args.out]
    if args.coco is not None:
        written.append(export.write_coco(result.masks, args.coco, video=args.sequence))
    if args.mp4 is not None:
        written.append(export.overlay_video(video.frames, result.masks, args.mp4))
    if args.gif is not None:
        written.append(export.overlay_animation(video.frames, result.masks, args.gif))
    print(
        f"{args.sequence}: {video.n_frames} frames in {seconds:.2f} s "
        f"({seconds / video.n_frames:.3f} s per frame, embedding{' and adaptation' if adapt else ''} included); "
        f"wrote {', '.join(map(str, written))}"
    )
    return 0


# ----------------------------------------------------------------------------- evaluate

def cmd_evaluate(args) -> int:
    from .device import describe_device, pick_device

    output_file(args.json, "--json")
    if args.save_masks is not None:
        output_folder(args.save_masks, "--save-masks")
    names = _known_sequences(args.davis_root, _names(args.sequences, "--sequences"))
    config = _transfer_config(args, masks=args.protocol == "semi")
    if args.adapt and args.protocol != "semi":
        raise BadInputError("--adapt applies to the semi protocol (frame 0's mask); the interactive protocol "
                            "adapts through evaluate_interactive(adapt=...)")
    adapt = _mask_adapt(args.adapt, default=args.protocol == "semi")

    def report(name, row):
        print(f"{name:20s} J={row['J']:.3f} F={row['F']:.3f} J&F={row['J&F']:.3f} "
              f"{row['seconds_per_frame']:.3f} s/frame", flush=True)

    if args.protocol == "semi":
        from .evaluation.semi import evaluate_semi_supervised
        from .video import load_davis_sequence

        videos = (load_davis_sequence(args.davis_root, name, lazy=True) for name in names)
        output = evaluate_semi_supervised(videos, model=args.model, config=config, device=args.device,
                                          save_masks=args.save_masks, progress=report,
                                          adapt=adapt)
    else:
        from .evaluation.interactive import evaluate_interactive

        output = evaluate_interactive(args.davis_root, names, model=args.model, config=config, device=args.device,
                                      interactions=args.interactions, save_masks=args.save_masks, progress=report)
    output.update(
        protocol=args.protocol,
        adapt=adapt,
        model=str(args.model),
        config=asdict(config),
        device=describe_device(pick_device(args.device)),
        davis_root=str(args.davis_root),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2, allow_nan=False))
    mean = output["mean"]
    print("mean " + " ".join(f"{k}={v:.3f}" for k, v in mean.items()) + f"; results in {args.json}")
    return 0


# ----------------------------------------------------------------------------- train

def _train_split(args) -> tuple[list[str], list[str]]:
    from .training.data import default_split

    names = _known_sequences(args.davis_root, _names(args.sequences, "--sequences"))
    val = _names(args.val_sequences, "--val-sequences")
    if args.fold is not None:
        if val is not None:
            raise BadInputError("give --fold or --val-sequences, not both: a fold names its validation sequences")
        return _fold_split(names, args.fold, args.fold_seed)
    if val is None:
        return default_split(names, n_val=args.n_val)
    outside = [n for n in val if n not in names]
    if outside:
        raise BadInputError(f"--val-sequences {', '.join(outside)} are not among the sequences {names}")
    train_names = [n for n in names if n not in val]
    if not train_names:
        raise BadInputError("no training sequences left after holding out the validation ones")
    return train_names, val


def _fold_split(names: list[str], text: str, seed: int) -> tuple[list[str], list[str]]:
    """``(train, val)`` of fold ``I/K`` (``I`` counted from 0)."""
    from .training.data import kfold_splits

    index, sep, count = str(text).partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise BadInputError(f"--fold must be I/K, fold I (from 0) of K folds, e.g. 0/5; got {text!r}") from None
    if not sep or not 0 <= index < count:
        raise BadInputError(f"--fold must be I/K with 0 <= I < K, e.g. 0/5; got {text!r}")
    return kfold_splits(names, count, seed)[index]


def _resumed_run(args) -> tuple:
    """``(config, train_names, val_names)`` of the run saved in ``--resume``."""
    from .training import TrainConfig
    from .training.loop import load_training_state

    state = load_training_state(args.resume)
    record = dict(state["config"])
    record["scale_range"] = tuple(record["scale_range"])
    if args.device is not None:
        record["device"] = args.device
    config = TrainConfig(**record)
    _known_sequences(args.davis_root, state["train_sequences"] + state["val_sequences"], "--resume")
    return config, state["train_sequences"], state["val_sequences"]


def cmd_train(args, argv: list[str]) -> int:
    from .training import TrainConfig, load_davis_clips, train
    from .training.config import PRETRAINED_ARCHS

    output_file(args.out, "--out")
    if args.history is not None:
        output_file(args.history, "--history")
    if args.checkpoint_every < 0:
        raise BadInputError(f"--checkpoint-every must be 0 or more; got {args.checkpoint_every}")
    if args.resume is not None:
        config, train_names, val = _resumed_run(args)
    else:
        train_names, val = _train_split(args)
        arch_options = {
            k: v for k, v in (("dim", args.dim), ("stride", args.stride), ("colour_weight", args.colour_weight),
                              ("top_stride", args.top_stride), ("head_width", args.head_width))
            if v is not None
        }
        weights = None if str(args.weights).lower() == "none" or args.arch not in PRETRAINED_ARCHS else args.weights
        config = TrainConfig(
            arch=args.arch, arch_options=arch_options, weights=weights, freeze_backbone=not args.train_backbone,
            steps=args.steps, batch_pairs=args.batch_pairs, crop=args.crop, loss=args.loss, lr=args.lr,
            hard_fraction=args.hard_fraction, seed=args.seed, val_every=args.val_every,
            train_blocks=args.train_blocks, backbone_lr_scale=args.backbone_lr_scale,
            val_max_frames=args.val_max_frames, val_scale=args.val_scale, device=args.device,
        )
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks
    command = "python -m simwidgets " + " ".join(shlex.quote(a) for a in argv)
    if main_rank:
        what = f"resuming {args.resume}" if args.resume is not None else "training"
        print(f"{what} {config.arch} on {len(train_names)} sequences, validating on {val}", flush=True)
    result = train(
        load_davis_clips(args.davis_root, train_names), load_davis_clips(args.davis_root, val), config,
        out=args.out, progress=not args.no_progress and main_rank, command=command,
        log=lambda line: print(line, flush=True), checkpoint_every=args.checkpoint_every, resume=args.resume,
    )
    if main_rank:
        if args.history:
            args.history.parent.mkdir(parents=True, exist_ok=True)
            args.history.write_text(json.dumps({"history": result.history, "validation": result.validation},
                                               indent=1))
        if val:
            print(f"done: best validation J&F {result.best_score:.4f} at step {result.best_step}; saved {args.out}",
                  flush=True)
        else:
            print(f"done: no validation sequences, so the last step ({result.best_step}) is saved: {args.out}",
                  flush=True)
    return 0


# ----------------------------------------------------------------------------- entry point

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "precision", None):
            from .device import PRECISION_ENV_VAR

            os.environ[PRECISION_ENV_VAR] = args.precision
        if getattr(args, "compile", None):
            from .models.compiled import COMPILE_ENV_VAR

            os.environ[COMPILE_ENV_VAR] = args.compile
        if args.command == "propagate":
            return cmd_propagate(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "compile":
            return cmd_compile(args)
        return cmd_train(args, argv)
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk full, a permission denied while writing...
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
