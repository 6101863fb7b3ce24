"""Semi-supervised J and F under k-fold cross-validation: the scheme that ranks recipes (issue 15).

    .venv/bin/python benchmarks/bench_kfold.py \
        --recipe "frozen-s8=runs/kfold/fold{fold}-frozen-s8.pt" --recipe baseline=baseline \
        [--recipe "all-refs=runs/kfold/fold{fold}-frozen-s8.pt@max_references=8192"] \
        [--k 5 --seed 0] [--transfer NAME=VALUE ...] [--out results/kfold.json]

Nine validation sequences could not rank models: colour and position separate their objects,
so the hand-crafted baseline scored like the learned model there (0.808 against 0.810).
Here every non-demo sequence of the root (25 of DAVIS 2016's 28 train sequences) is scored
once, by the model of the fold that held it out (``simwidgets.training.kfold_splits``), on
every frame at full resolution: frame 0's true mask is propagated to frames 1..T.  A recipe
is a checkpoint path with ``{fold}`` in it (one model per fold, trained by
``python -m simwidgets train --fold I/K``) or a model that needs no training (``baseline``).

Printed and written: J, F and J&F per sequence, per fold (mean of its sequences) and over
all of them, with the spread over folds and over sequences, and for each recipe against the
first its paired per-sequence difference with its standard error: a difference smaller than
about two standard errors does not rank the two.  The machine and its load go beside them.
Resumable: sequences already in ``--out`` for the same recipe and options are skipped.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from simwidgets.evaluation import evaluate_semi_supervised  # noqa: E402
from simwidgets.models import load_model  # noqa: E402
from simwidgets.training import kfold_splits  # noqa: E402
from simwidgets.video import list_sequences, load_davis_sequence  # noqa: E402

from bench_interactive import option  # noqa: E402  (NAME=VALUE, the value read as JSON)
from simwidgets.transfer import TransferConfig  # noqa: E402
from bench_transfer import machine  # noqa: E402
from paired import paired_difference  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
KEYS = ("J", "F", "J&F")


def recipe(text: str) -> tuple[str, str, dict]:
    """``LABEL=MODEL`` (or just ``MODEL``, labelled by itself), optionally followed by
    ``@NAME=VALUE,NAME=VALUE``: transfer options of this recipe alone, on top of
    ``--transfer`` (so one run pairs inference options on the same models)."""
    text, _, extra = text.partition("@")
    options = dict(option(item) for item in extra.split(",")) if extra.strip() else {}
    label, sep, model = text.partition("=")
    label, model = (label.strip(), model.strip()) if sep else (text.strip(), text.strip())
    return label, model, options


def mean_std(values) -> tuple[float, float]:
    values = np.asarray(list(values), dtype=float)
    return float(values.mean()), float(values.std())


def summarise(rows: dict, folds: list[list[str]]) -> dict:
    """Means over sequences and over folds, with their spreads."""
    out = {"n": len(rows), "folds": []}
    for key in KEYS:
        out[key], out[key + "_std_sequences"] = mean_std(r[key] for r in rows.values())
    for fold in folds:
        picked = [rows[n] for n in fold if n in rows]
        out["folds"].append({key: float(np.mean([r[key] for r in picked])) if picked else None for key in KEYS}
                            | {"n": len(picked)})
    complete = [f for f in out["folds"] if f["n"]]
    for key in KEYS:
        out[key + "_std_folds"] = float(np.std([f[key] for f in complete])) if complete else None
    return out


def paired(rows: dict, reference: dict) -> dict:
    """Mean per-sequence difference against the reference recipe and its standard error."""
    common = sorted(set(rows) & set(reference))
    out = {"n": len(common)}
    for key in KEYS:
        out[key], out[key + "_se"], out[key + "_wins"] = paired_difference(
            rows[n][key] - reference[n][key] for n in common)
    return out


def markdown(report: dict) -> str:
    labels = [report["reference"]] + [r for r in report["recipes"] if r != report["reference"]]
    labels = [r for r in labels if report["recipes"][r].get("summary")]
    lines = [f"# Semi-supervised J and F, {report['k']}-fold cross-validation over {report['root']}", "",
             f"Each sequence is scored by the model of the fold that held it out (folds: "
             f"`kfold_splits(names, k={report['k']}, seed={report['seed']})`; the demos bear, dog-agility "
             f"and tennis are in no fold); frame 0's true mask to frames 1..T, every frame, full resolution. "
             f"Transfer options: {report['transfer_options'] or 'defaults'}. "
             + (f"Test-time adaptation on frame 0's mask (models with weights): {report['adapt']}. "
                if report.get("adapt") else "") + f"Machine: {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, torch {report['machine']['torch']} "
             f"({report['machine']['torch_threads']} threads).", ""]
    for i, (_, val) in enumerate(report["folds"]):
        lines.append(f"- fold {i}: {', '.join(val)}")
    lines += ["", "| recipe | n | J | F | J&F | J&F spread over folds | over sequences | "
              + " | ".join(f"fold {i}" for i in range(report["k"])) + " |",
              "|---" * (7 + report["k"]) + "|"]
    for label in labels:
        s = report["recipes"][label]["summary"]
        own = report["recipes"][label].get("options")
        name = f"{label} ({', '.join(f'{k}={v}' for k, v in own.items())})" if own else label
        lines.append(f"| {name} | {s['n']} | {s['J']:.3f} | {s['F']:.3f} | {s['J&F']:.3f} | "
                     f"{s['J&F_std_folds']:.3f} | {s['J&F_std_sequences']:.3f} | "
                     + " | ".join("" if f["J&F"] is None else f"{f['J&F']:.3f}" for f in s["folds"]) + " |")
    if len(labels) > 1:
        lines += ["", f"Paired per-sequence difference against `{labels[0]}` (mean ± standard error; "
                      "wins = sequences where it is higher):", "",
                  "| recipe | n | ΔJ | ΔF | ΔJ&F | wins |", "|---|---|---|---|---|---|"]
        for label in labels[1:]:
            p = report["recipes"][label]["paired"]
            if not p["n"]:
                continue
            lines.append(f"| {label} | {p['n']} | {p['J']:+.3f} ± {p['J_se']:.3f} | {p['F']:+.3f} ± {p['F_se']:.3f} "
                         f"| {p['J&F']:+.3f} ± {p['J&F_se']:.3f} | {p['J&F_wins']} of {p['n']} |")
    lines += ["", "| sequence | fold | " + " | ".join(f"{label} J / F / J&F" for label in labels) + " |",
              "|---|---|" + "---|" * len(labels)]
    for i, (_, val) in enumerate(report["folds"]):
        for name in val:
            cells = []
            for label in labels:
                r = report["recipes"][label]["sequences"].get(name)
                cells.append("" if r is None else f"{r['J']:.3f} / {r['F']:.3f} / {r['J&F']:.3f}")
            lines.append(f"| {name} | {i} | " + " | ".join(cells) + " |")
    lines += ["", "Wall time and load per recipe: " + "; ".join(
        f"{label} {report['recipes'][label]['wall_seconds'] / 60:.1f} min, load "
        f"{report['recipes'][label].get('load_average_before', '?')} -> {report['recipes'][label].get('load_average_after', '?')}"
        for label in labels) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", type=recipe, default=None, metavar="LABEL=MODEL[@NAME=VALUE,...]",
                        help="a checkpoint path with {fold} in it, or a model name, optionally with transfer "
                             "options of its own after @; the first is the reference (default: the baseline "
                             "alone, which needs no training)")
    parser.add_argument("--davis-root", type=Path, default=REPO.parent / "shared" / "data" / "davis2016")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", default=None, help="comma-separated fold numbers to score (default: all)")
    parser.add_argument("--transfer", action="append", type=option, default=[], metavar="NAME=VALUE",
                        help="a TransferConfig option, e.g. n_context=7 (repeatable; the defaults are "
                             "TransferConfig.for_masks(): top_k 5, refine_radius 2 since 2026-12-02; pass "
                             "refine_radius=1 to resume a file scored before)")
    parser.add_argument("--adapt", type=json.loads, default=None, metavar="JSON",
                        help="test-time adaptation on frame 0's mask before each sequence, as keyword arguments "
                             "of adapt_to_references, e.g. '{\"steps\": 30, \"lr\": 0.001}' (default: none)")
    parser.add_argument("--out", type=Path, default=RESULTS / "kfold.json")
    args = parser.parse_args(argv)
    args.recipe = args.recipe or [("baseline", "baseline", {})]
    config = TransferConfig.for_masks(**dict(args.transfer))  # full masks: top_k 5, refine_radius 2 unless given
    splits = kfold_splits(list_sequences(args.davis_root), args.k, args.seed)
    wanted = range(args.k) if args.folds is None else [int(f) for f in args.folds.split(",")]
    plain = TransferConfig()  # the options recorded are those that differ from TransferConfig()'s
    options = {f: getattr(config, f) for f in plain.option_names() if getattr(config, f) != getattr(plain, f)}
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    if (report.get("folds") != [list(s) for s in splits] or report.get("transfer_options") != options
            or report.get("adapt") != args.adapt):
        report = {"recipes": {}}  # another scheme or other options: start afresh
    report.update(root=args.davis_root.resolve().name, k=args.k, seed=args.seed, folds=[list(s) for s in splits],
                  transfer_options=options, adapt=args.adapt, machine=machine(), reference=args.recipe[0][0])
    for label, model, own in args.recipe:
        recipe_config = config.with_options(**own)  # checked: an unknown name says so
        entry = report["recipes"].setdefault(label, {"model": model, "options": own, "sequences": {},
                                                     "wall_seconds": 0.0})
        if entry["model"] != model or entry.get("options", {}) != own:
            entry.update(model=model, options=own, sequences={}, wall_seconds=0.0)
        start, load, spent = time.perf_counter(), os.getloadavg(), entry["wall_seconds"]

        def clock(entry=entry, start=start, load=load, spent=spent):
            """Time and load so far: kept after each sequence, so an interrupted run still reports them."""
            entry["wall_seconds"] = spent + time.perf_counter() - start
            entry["load_average_before"] = [round(x, 2) for x in load]
            entry["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

        for fold in wanted:
            train, val = splits[fold]
            todo = [n for n in val if n not in entry["sequences"]]
            if not todo:
                continue
            net = load_model(model.format(fold=fold))
            record = getattr(net, "training_record", None) or {}
            leaked = sorted(set(record.get("train_sequences", [])) & set(val))
            if leaked:
                raise SystemExit(f"{label} fold {fold}: the model was trained on {leaked}, which this fold holds out")

            def progress(name, row, fold=fold):
                entry["sequences"][name] = {k: row[k] for k in (*KEYS, "n_frames", "seconds_per_frame")} | {"fold": fold}
                clock()
                print(f"  {label:18s} fold {fold} {name:18s} J {row['J']:.3f}  F {row['F']:.3f}  J&F {row['J&F']:.3f}"
                      f"  {row['seconds_per_frame']:.2f} s/frame", flush=True)
                args.out.write_text(json.dumps(report, indent=1))

            videos = (load_davis_sequence(args.davis_root, n, lazy=True) for n in todo)
            # the hand-crafted baseline has no weights: adapting it returns it unchanged (steps 0)
            evaluate_semi_supervised(videos, net, config=recipe_config, progress=progress, adapt=args.adapt)
    folds = [val for _, val in splits]
    reference = report["recipes"][args.recipe[0][0]]["sequences"]
    for label, entry in report["recipes"].items():
        if entry["sequences"]:
            entry["summary"] = summarise(entry["sequences"], folds)
            entry["paired"] = paired(entry["sequences"], reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
