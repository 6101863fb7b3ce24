"""The DAVIS interactive protocol on a whole DAVIS root, for several models (issue 5).

    .venv/bin/python benchmarks/bench_interactive.py --davis-root ../shared/data/davis2016 \
        --models default,baseline [--interactions 8] [--sequences a,b]

Runs :func:`simwidgets.evaluation.interactive.evaluate_interactive` (davisinteractive's own session,
robot and summary, offline) once per model and writes
``benchmarks/results/interactive_<root>.json`` and ``.md``: per-sequence AUC, J&F@60s and
final J&F, davisinteractive's pooled means, and the means over the sequences each model
was **trained on** and those it was **not** (read from the checkpoint's own training
record, so the split cannot be misreported).  The protocol times every prediction, so the
figures depend on the machine and on its load: the load average before and after each
model's run is recorded beside them.

A model path with ``{fold}`` in it scores the 28 sequences as the k-fold scheme does
(``bench_kfold.py``): each fold's held-out sequences with that fold's model, the demos
(in no fold) with ``--demo-model``, so every sequence is unseen by the model that scores it:

    .venv/bin/python benchmarks/bench_interactive.py --models "runs/kfold/fold{fold}-frozen-s8.pt" \
        --no-time-limit --resume --out benchmarks/results/interactive_kfold.json

With ``--resume`` every finished sequence is saved beside ``--out`` (``.partial.json``) and a
rerun of the same command skips them: such a run takes most of an hour on a 2-core CPU.
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

from simwidgets.models import load_model  # noqa: E402
from simwidgets.training import kfold_splits  # noqa: E402
from simwidgets.video import list_sequences  # noqa: E402
from simwidgets.transfer import TransferConfig  # noqa: E402
from simwidgets.evaluation.interactive import evaluate_interactive  # noqa: E402

from bench_transfer import machine  # noqa: E402  (same folder: one machine description for every benchmark)

RESULTS = REPO / "benchmarks" / "results"


def option(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> (name, value) with the value read as JSON when it parses
    (``true``, ``12``, ``0.05``, ``null``), else kept as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def transfer_config(options) -> TransferConfig:
    """The TransferConfig of ``--transfer`` options (checked: an unknown name says so)."""
    return TransferConfig().with_options(**dict(options))


def trained_on(model_name: str) -> list[str]:
    """Sequences the model saw in training, from its checkpoint record (none for the baseline)."""
    record = getattr(load_model(model_name), "training_record", None) or {}
    return sorted(record.get("train_sequences", []))


def _commit() -> str:
    """The checked-out commit (``+`` when the tree has changes), so figures name their code."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def subset_means(rows: dict, names: list[str]) -> dict | None:
    picked = [rows[n] for n in names if n in rows]
    if not picked:
        return None
    keys = ("AUC", "J&F@60s", "J&F", "seconds_per_frame")
    return {"n": len(picked), **{k: float(np.mean([r[k] for r in picked])) for k in keys}}


#: issue 14's targets for the loop (DAVIS protocol, the robot, 8 interactions)
TARGETS = {"gain": 0.10, "ends_below_start": 0, "corrected_frame_worst_change": 0.0, "AUC": 0.80, "J&F@60s": 0.82}


def loop_figures(rows: dict) -> dict:
    """What the corrections buy: mean J&F after the last interaction minus after the
    first, the sequences that end below their start, and the corrected frames' own change
    (after their round minus before it; the worst case)."""
    first = [r["interactions"][0]["J&F"] for r in rows.values() if r["interactions"]]
    last = [r["interactions"][-1]["J&F"] for r in rows.values() if r["interactions"]]
    below = [n for n, r in rows.items() if r["interactions"] and r["interactions"][-1]["J&F"] < r["interactions"][0]["J&F"]]
    changes = [(c["after"] - c["before"], n, c) for n, r in rows.items() for c in r.get("corrected", [])]
    worst = min(changes, key=lambda x: x[0]) if changes else None
    return {
        "mean_first": float(np.mean(first)) if first else None,
        "mean_last": float(np.mean(last)) if last else None,
        "gain": float(np.mean(last) - np.mean(first)) if first else None,
        "ends_below_start": below,
        "corrections": len(changes),
        "corrected_frames_fell": sum(1 for c in changes if c[0] < 0),
        # J and F apart (records from before 2026-12-02 have J&F only)
        "corrected_frames_J_fell": sum(1 for c in changes if "J_after" in c[2] and c[2]["J_after"] < c[2]["J_before"]),
        "corrected_frames_F_fell": sum(1 for c in changes if "F_after" in c[2] and c[2]["F_after"] < c[2]["F_before"]),
        "corrected_frame_mean_change": float(np.mean([c[0] for c in changes])) if changes else None,
        "corrected_frame_worst": None if worst is None else {
            "sequence": worst[1], "interaction": worst[2]["interaction"], "frame": worst[2]["frame"],
            "before": worst[2]["before"], "after": worst[2]["after"], "change": worst[0]},
    }


def fold_groups(args, pattern: str, sequences: list[str] | None) -> list[tuple[str, list[str]]]:
    """``(model, sequences)`` for a model name with ``{fold}`` in it: each fold's held-out
    sequences with that fold's model (``kfold_splits(names, --k, --fold-seed)``, the
    scheme of ``bench_kfold.py``), and the sequences in no fold (the demos) with
    ``--demo-model``."""
    names = list_sequences(args.davis_root)
    wanted = set(sequences or names)
    splits = kfold_splits(names, args.k, args.fold_seed)
    in_folds = {n for _, val in splits for n in val}
    groups = [(pattern.format(fold=i), [n for n in val if n in wanted]) for i, (_, val) in enumerate(splits)]
    groups.append((args.demo_model, [n for n in names if n in wanted and n not in in_folds]))
    return [(m, g) for m, g in groups if g]


def _plain(value):
    """JSON for numpy scalars and arrays inside a row."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


class Partial:
    """Rows of finished sequences, saved after each one, so that an interrupted run
    resumes (``--resume``) where it stopped instead of starting over: a 28-sequence run
    takes most of an hour on a 2-core CPU.  Rows are kept per model and only reused
    under the same settings (interactions, time limit, transfer options, folds)."""

    def __init__(self, path: Path | None, settings: dict):
        self.path, self.settings = path, settings
        self.data = {}
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            if saved.get("settings") == settings:
                self.data = saved.get("models", {})

    def done(self, model_name: str) -> dict:
        return dict(self.data.get(model_name, {}))

    def add(self, model_name: str, sequence: str, row: dict) -> None:
        if self.path is None:
            return
        self.data.setdefault(model_name, {})[sequence] = row
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "models": self.data}, default=_plain))
        tmp.replace(self.path)


def run(args, partial: Partial | None = None) -> dict:
    partial = partial or Partial(None, {})
    sequences = args.sequences.split(",") if args.sequences else None
    report = {
        "machine": machine(),
        "davis_root": str(args.davis_root),
        "interactions": args.interactions,
        "models": {},
    }
    for model_name in args.models.split(","):
        per_fold = "{fold}" in model_name
        groups = fold_groups(args, model_name, sequences) if per_fold else [(model_name, sequences)]
        seen_by = {model: trained_on(model) for model, _ in groups}  # each checkpoint read once
        for model, group in groups if per_fold else []:  # a fold's model must not have seen its sequences
            leaked = sorted(set(seen_by[model]) & set(group))
            if leaked:
                raise SystemExit(f"{model} was trained on {leaked}: it cannot score them as unseen")
        # the sequences that the model scoring them was trained on (per fold: that fold's model)
        seen = sorted({n for model, group in groups for n in (group or list_sequences(args.davis_root))
                       if n in seen_by[model]})
        load_start = os.getloadavg()
        start = time.perf_counter()

        def progress(name, row, seen=seen, model_name=model_name):
            partial.add(model_name, name, row)
            tag = "trained on" if name in seen else "held out"
            print(f"  {model_name:10s} {name:18s} AUC {row['AUC']:.3f}  J&F@60s {row['J&F@60s']:.3f}  "
                  f"final J&F {row['J&F']:.3f}  {row['n_interactions']} interactions  "
                  f"{row['seconds_per_frame']:.2f} s/frame  ({tag})", flush=True)
            print("    J&F per interaction: " + " ".join(f"{i['J&F']:.3f}" for i in row["interactions"]), flush=True)
            print("    corrected frame before -> after: " + "  ".join(
                f"{c['frame']}: {c['before']:.3f}->{c['after']:.3f}" + (
                    f" (J {c['J_before']:.3f}->{c['J_after']:.3f}, F {c['F_before']:.3f}->{c['F_after']:.3f})"
                    if "J_before" in c else "") for c in row.get("corrected", [])), flush=True)

        rows, result = partial.done(model_name), None
        resumed = list(rows)
        if rows:
            print(f"  {model_name}: resuming, {len(rows)} sequences already done ({', '.join(rows)})", flush=True)
        for model, group in groups:
            todo = [n for n in group if n not in rows]
            if not todo:
                continue
            result = evaluate_interactive(args.davis_root, todo, model=model, interactions=args.interactions,
                                          progress=progress, max_time=None if args.no_time_limit else "challenge",
                                          config=transfer_config(args.transfer), adapt=args.adapt)
            rows.update(result["sequences"])
        if result is None:
            raise SystemExit(f"{model_name}: every sequence is already in the partial file; nothing to run")
        # one run scored every row: davisinteractive's pooled summary; several runs (models, or a
        # resumed run) each pool their own, so the mean of sequences
        pooled = len(groups) == 1 and len(rows) == len(result["sequences"])
        if not pooled:
            result["mean"] = subset_means(rows, list(rows))
            result["settings"]["models"] = {m: g for m, g in groups}
        held_out = [n for n in rows if n not in seen]
        report["models"][model_name] = {
            "mean": result["mean"],
            "mean_is_pooled": pooled,  # davisinteractive's pooled summary, else the mean of sequences
            "trained_on": seen,
            "held_out_mean": subset_means(rows, held_out),
            "trained_on_mean": subset_means(rows, seen),
            "sequences": {
                n: {**{k: r[k] for k in ("AUC", "J&F@60s", "J&F", "n_interactions", "n_frames", "seconds_per_frame",
                                         "start", "corrected")},
                    "curve": [i["J&F"] for i in r["interactions"]]}
                for n, r in rows.items()
            },
            "loop": loop_figures(rows),
            "settings": result["settings"],
            "transfer_options": dict(args.transfer),
            "commit": _commit(),
            "wall_seconds": time.perf_counter() - start,
            "resumed_sequences": resumed,  # done by an earlier, interrupted run (not in wall_seconds)
            "load_average_before": [round(x, 2) for x in load_start],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    return report


def markdown(report: dict) -> str:
    m = report["machine"]
    budgets = {r.get("settings", {}).get("max_time_per_object", 30) for r in report["models"].values()}
    budget = ("no time budget (every interaction runs)" if budgets == {None}
              else "30 s per object per interaction (the 2018 challenge's budget)")
    lines = [
        f"# DAVIS interactive protocol on `{report['davis_root']}`",
        "",
        f"{report['interactions']} interactions, {budget}; "
        f"davisinteractive's robot and summary. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), computing on {m['device']}.",
        "",
    ]
    for name, r in report["models"].items():
        lines += [
            f"## {name}",
            "",
            f"Load average before/after: {r['load_average_before']} / {r['load_average_after']}; "
            f"wall time {r['wall_seconds'] / 60:.1f} min; network precision "
            f"{r.get('settings', {}).get('network_precision', 'fp32')}; commit {r.get('commit', '?')}; "
            f"transfer options {r.get('transfer_options') or 'defaults'}.",
            "",
            "| sequences | n | AUC | J&F@60s | final J&F | s/frame |",
            "|---|---|---|---|---|---|",
            f"| all ({'davisinteractive' + chr(39) + 's pooled summary' if r.get('mean_is_pooled', True) else 'mean of sequences'}) | {len(r['sequences'])} | {r['mean']['AUC']:.3f} | "
            f"{r['mean']['J&F@60s']:.3f} | {r['mean']['J&F']:.3f} | {r['mean']['seconds_per_frame']:.2f} |",
        ]
        for label, key in (("held out (not trained on), mean of sequences", "held_out_mean"),
                           ("trained on, mean of sequences", "trained_on_mean")):
            s = r[key]
            if s:
                lines.append(f"| {label} | {s['n']} | {s['AUC']:.3f} | {s['J&F@60s']:.3f} | {s['J&F']:.3f} | "
                             f"{s['seconds_per_frame']:.2f} |")
        loop = r.get("loop")
        if loop and loop["gain"] is not None:
            worst = loop["corrected_frame_worst"]
            worst_text = "—" if worst is None else (
                f"{worst['change']:+.3f} ({worst['sequence']}, interaction {worst['interaction']}, frame "
                f"{worst['frame']}: {worst['before']:.3f} -> {worst['after']:.3f})")
            lines += [
                "", "| loop figure | measured | target |", "|---|---|---|",
                f"| mean J&F after the last interaction minus after the first | {loop['gain']:+.3f} "
                f"({loop['mean_first']:.3f} -> {loop['mean_last']:.3f}) | >= +{TARGETS['gain']:.2f} |",
                f"| sequences ending below their first interaction | {len(loop['ends_below_start'])} "
                f"{'(' + ', '.join(loop['ends_below_start']) + ')' if loop['ends_below_start'] else ''} | none |",
                f"| corrected frames whose own J&F fell | {loop['corrected_frames_fell']} of {loop['corrections']}; "
                f"worst {worst_text} | never |",
                f"| ... whose own J fell / whose own F fell | {loop.get('corrected_frames_J_fell', '?')} / "
                f"{loop.get('corrected_frames_F_fell', '?')} | |",
                f"| AUC / J&F@60s ({'pooled' if r.get('mean_is_pooled', True) else 'mean of sequences'}) | {r['mean']['AUC']:.3f} / {r['mean']['J&F@60s']:.3f} | "
                f">= {TARGETS['AUC']:.2f} / >= {TARGETS['J&F@60s']:.2f} |",
            ]
        lines += ["", "| sequence | trained on | AUC | J&F@60s | final J&F | interactions | s/frame | J&F per interaction |",
                  "|---|---|---|---|---|---|---|---|"]
        for seq, row in r["sequences"].items():
            curve = " ".join(f"{v:.2f}" for v in row.get("curve", []))
            lines.append(f"| {seq} | {'yes' if seq in r['trained_on'] else 'no'} | {row['AUC']:.3f} | "
                         f"{row['J&F@60s']:.3f} | {row['J&F']:.3f} | {row['n_interactions']} | "
                         f"{row['seconds_per_frame']:.2f} | {curve} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis-root", type=Path, default=REPO.parent / "shared" / "data" / "davis2016")
    parser.add_argument("--models", default="default,baseline",
                        help="comma-separated names or checkpoint paths; a path with {fold} in it is one model per "
                             "fold of the k-fold scheme, each scoring the sequences its fold held out")
    parser.add_argument("--sequences", default=None, help="comma-separated (default: every sequence of the root)")
    parser.add_argument("--interactions", type=int, default=8)
    parser.add_argument("--no-time-limit", action="store_true",
                        help="no time budget (every interaction runs; AUC normalised by davisinteractive's rule)")
    parser.add_argument("--transfer", action="append", type=option, default=[], metavar="NAME=VALUE",
                        help="a TransferConfig option for every round, e.g. fuse_corrections=true (repeatable)")
    parser.add_argument("--adapt", type=json.loads, default=None, metavar="JSON",
                        help="test-time adaptation on the first interaction's scribbles, as keyword arguments of "
                             "adapt_to_references, e.g. '{\"steps\": 30, \"lr\": 0.001, \"keep_weight\": 4.0}' "
                             "(default: none)")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default: results/interactive_<root>.json)")
    parser.add_argument("--k", type=int, default=5, help="folds, for a model with {fold} in its path")
    parser.add_argument("--fold-seed", type=int, default=0, help="the folds' seed (kfold_splits)")
    parser.add_argument("--demo-model", default="default",
                        help="with a {fold} model: the model of the sequences in no fold (the demos)")
    parser.add_argument("--resume", action="store_true",
                        help="save each finished sequence beside --out (.partial.json) and skip those already "
                             "there from an interrupted run with the same settings")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other models already in the output file (runs done at different times)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"interactive_{args.davis_root.resolve().name}.json"
    settings = {"interactions": args.interactions, "no_time_limit": args.no_time_limit,
                "transfer": [list(t) for t in args.transfer], "k": args.k, "fold_seed": args.fold_seed,
                "demo_model": args.demo_model, "davis_root": str(args.davis_root), "adapt": args.adapt}
    partial = Partial(out.with_suffix(".partial.json") if args.resume else None, settings)
    report = run(args, partial)
    if args.merge and out.exists():
        earlier = json.loads(out.read_text())
        if earlier.get("interactions") == report["interactions"]:
            for name, row in earlier["models"].items():
                report["models"].setdefault(name, row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    if args.resume:
        out.with_suffix(".partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
