"""Runs of bench_interactive.py over disjoint sequences, merged into one result (issue 14).

    .venv/bin/python benchmarks/merge_interactive.py OUT.json PART.json [PART.json ...]

Why: the k-fold protocol needs one model per fold, and on a 2-core CPU the fold models
finish training one by one; running each fold's sequences as soon as its model exists
(``--sequences``, one output per part) overlaps the two.  Each part is a finished
bench_interactive.py result; their rows are joined per model, the means become the mean of
sequences (davisinteractive pools only within one run), the loop's figures are computed
again over all rows, and OUT.json and its ``.md`` are written as bench_interactive.py
writes them.  A sequence in two parts, or parts whose settings differ, is an error; a
merged result may itself be a part.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_interactive import loop_figures, markdown, subset_means  # benchmarks/ is on sys.path

SHARED = ("interactions", "davis_root")


def merge(parts: list[dict]) -> dict:
    """One report from several; raises ValueError on overlapping sequences or other settings."""
    first = parts[0]
    for part in parts[1:]:
        for key in SHARED:
            if part.get(key) != first.get(key):
                raise ValueError(f"parts differ in {key}: {first.get(key)!r} and {part.get(key)!r}")
    report = {k: v for k, v in first.items() if k != "models"}
    report["models"] = {}
    names = list(dict.fromkeys(name for part in parts for name in part["models"]))
    for name in names:
        pieces = [part["models"][name] for part in parts if name in part["models"]]
        options = {json.dumps(p.get("transfer_options", {}), sort_keys=True) for p in pieces}
        if len(options) > 1:
            raise ValueError(f"{name}: parts ran with other transfer options: {sorted(options)}")
        rows, trained = {}, []
        for piece in pieces:
            for sequence, row in piece["sequences"].items():
                if sequence in rows:
                    raise ValueError(f"{name}: {sequence} is in two parts")
                rows[sequence] = row
            trained += [n for n in piece.get("trained_on", []) if n not in trained]
        held_out = [n for n in rows if n not in trained]
        # loop_figures reads each row's interactions; a report's rows keep the curve
        as_run = {n: {"interactions": [{"J&F": v} for v in r["curve"]], "corrected": r.get("corrected", [])}
                  for n, r in rows.items()}
        merged = dict(pieces[0])
        merged.update({
            "mean": subset_means(rows, list(rows)),
            "mean_is_pooled": False,
            "trained_on": trained,
            "held_out_mean": subset_means(rows, held_out),
            "trained_on_mean": subset_means(rows, trained),
            "sequences": rows,
            "loop": loop_figures(as_run),
            "commit": sorted({c for p in pieces for c in _listed(p.get("commit"))}),
            "wall_seconds": sum(p.get("wall_seconds", 0.0) for p in pieces),
            "parts": [part for p in pieces for part in _parts_of(p)],
        })
        report["models"][name] = merged
    return report


def _listed(value) -> list:
    """A part's commit: one hash from a run, a list of them from an earlier merge."""
    if not value:
        return []
    return list(value) if isinstance(value, list) else [value]


def _parts_of(piece: dict) -> list[dict]:
    """The runs a part was made of: itself, or the runs of an earlier merge (so a merged
    result can take one more part, as when a fold's model finishes late)."""
    if "parts" in piece:
        return list(piece["parts"])
    return [{"sequences": list(piece["sequences"]), "load_average_before": piece.get("load_average_before"),
             "load_average_after": piece.get("load_average_after")}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("parts", type=Path, nargs="+")
    args = parser.parse_args()
    report = merge([json.loads(p.read_text()) for p in args.parts])
    args.out.write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
