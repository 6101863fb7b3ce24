"""Recipes of different bench_kfold.py result files side by side, paired per sequence (issue 15).

    .venv/bin/python benchmarks/compare_kfold.py REFERENCE.json:LABEL OTHER.json:LABEL [...] [--md OUT.md]

``bench_kfold.py`` pairs the recipes of one run.  Training is deterministic on one kind of
machine, so a recipe scored in an earlier file can stand as the reference of a later one
without retraining it; this script pairs across files.  For each recipe against the first:
J, F and J&F over the sequences both scored, the paired per-sequence difference with its
standard error, and how many sequences it raises; then one row per sequence.  A recipe
scored on part of the folds is compared on those sequences only, and the table says how many.

Each recipe's transfer options (its file's, with its own over them) are printed beside it, so
that a comparison of options on the same models reads as one and an accidental mismatch shows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from paired import paired_difference  # benchmarks/ is on sys.path when run as a script

KEYS = ("J", "F", "J&F")


def load(spec: str) -> tuple[str, dict, dict]:
    """``(label, sequences, transfer options)`` of ``FILE:LABEL``: the file's options with
    the recipe's own (``LABEL=MODEL@NAME=VALUE``) over them."""
    path, _, label = spec.rpartition(":")
    if not path:
        raise SystemExit(f"give FILE:LABEL; got {spec!r}")
    data = json.loads(Path(path).read_text())
    if label not in data["recipes"]:
        raise SystemExit(f"{path} has no recipe {label!r} (it has {', '.join(data['recipes'])})")
    recipe = data["recipes"][label]
    return label, recipe["sequences"], {**data.get("transfer_options", {}), **recipe.get("options", {})}


def paired(ref: dict, other: dict, key: str) -> tuple[float, float, int, int]:
    """Mean and standard error of ``other - ref`` over the shared sequences, wins, n."""
    names = [n for n in ref if n in other]
    if not names:
        raise SystemExit("the two recipes share no sequence")
    mean, se, wins = paired_difference(other[n][key] - ref[n][key] for n in names)
    return mean, float("nan") if se is None else se, wins, len(names)


def report(specs: list[str]) -> str:
    runs = [load(s) for s in specs]
    ref_label, ref, _ = runs[0]
    lines = [f"Reference: `{ref_label}`. Transfer options: those that differ from `TransferConfig()`'s.", "",
             "| recipe | transfer options | n | J | F | J&F | ΔJ | ΔF | ΔJ&F | wins |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, seqs, opts in runs:
        names = [n for n in ref if n in seqs]
        means = [sum(seqs[n][k] for n in names) / len(names) for k in KEYS]
        shown = ", ".join(f"{k}={v}" for k, v in sorted(opts.items()))
        row = f"| {label} | {shown} | {len(names)} | " + " | ".join(f"{m:.3f}" for m in means)
        if seqs is ref:
            lines.append(row + " | | | | |")
            continue
        deltas = [paired(ref, seqs, k) for k in KEYS]
        lines.append(row + " | " + " | ".join(f"{m:+.3f} ± {se:.3f}" for m, se, _, _ in deltas)
                     + f" | {deltas[2][2]} of {deltas[2][3]} |")
    lines += ["", "| sequence | fold | " + " | ".join(f"{label} J / F / J&F" for label, _, _ in runs) + " |",
              "|---|---|" + "---|" * len(runs)]
    for name, row in ref.items():
        cells = [("" if name not in seqs else " / ".join(f"{seqs[name][k]:.3f}" for k in KEYS)) for _, seqs, _ in runs]
        lines.append(f"| {name} | {row.get('fold', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", metavar="FILE:LABEL", help="the first is the reference")
    parser.add_argument("--md", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    text = report(args.recipes)
    print(text)
    if args.md is not None:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
