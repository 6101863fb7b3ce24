"""Two runs of bench_interactive.py side by side, paired per sequence (issue 14).

    .venv/bin/python benchmarks/compare_interactive.py A.json B.json

For each sequence both runs scored: first and last J&F of the curve, AUC, and how many
corrected frames fell in their own round; then the paired difference (B - A) of the final
J&F and of the AUC as mean ± standard error, how many sequences B raises, and the issue's
figures (gain from the first to the last interaction, sequences ending below their start,
corrected frames that fell and the worst fall) for each run.
"""
from __future__ import annotations

import argparse
import json

from paired import paired_difference  # benchmarks/ is on sys.path when run as a script


def sequences(path):
    """``{sequence: row}`` of the first model of a result file (or of its ``.partial.json``:
    rows straight under the model), each row's ``curve`` the J&F after each interaction."""
    data = json.load(open(path))
    model = next(iter(data["models"].values()))
    rows = model.get("sequences", model)
    for row in rows.values():
        if isinstance(row.get("curve"), dict):  # davisinteractive's timed points: per interaction instead
            row["curve"] = [step["J&F"] for step in row["interactions"]]
    return rows


def figures(seqs):
    names = sorted(seqs)
    first = sum(seqs[n]["curve"][0] for n in names) / len(names)
    last = sum(seqs[n]["curve"][-1] for n in names) / len(names)
    auc = sum(seqs[n]["AUC"] for n in names) / len(names)
    below = [n for n in names if seqs[n]["curve"][-1] < seqs[n]["curve"][0]]
    corrected = [c for n in names for c in seqs[n].get("corrected", [])]
    fell = [c["after"] - c["before"] for c in corrected if c["after"] < c["before"]]
    return {"first": first, "last": last, "gain": last - first, "auc": auc, "below": below,
            "corrected": len(corrected), "fell": len(fell), "worst": min(fell, default=0.0)}


def paired(a, b):
    mean, se, wins = paired_difference(y - x for x, y in zip(a, b))
    return mean, se or 0.0, wins


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    sa, sb = sequences(args.a), sequences(args.b)
    names = sorted(set(sa) & set(sb))
    print(f"{'sequence':20s} {'A first':>7s} {'A last':>7s} {'B last':>7s} {'A AUC':>6s} {'B AUC':>6s} fellA fellB")
    for n in names:
        fa = sum(c["after"] < c["before"] for c in sa[n].get("corrected", []))
        fb = sum(c["after"] < c["before"] for c in sb[n].get("corrected", []))
        print(f"{n:20s} {sa[n]['curve'][0]:7.3f} {sa[n]['curve'][-1]:7.3f} {sb[n]['curve'][-1]:7.3f} "
              f"{sa[n]['AUC']:6.3f} {sb[n]['AUC']:6.3f} {fa:5d} {fb:5d}")
    for label, key in (("final J&F", lambda s, n: s[n]["curve"][-1]), ("AUC", lambda s, n: s[n]["AUC"])):
        mean, se, higher = paired([key(sa, n) for n in names], [key(sb, n) for n in names])
        print(f"B - A, {label}: {mean:+.3f} ± {se:.3f} (higher on {higher} of {len(names)})")
    for label, s in (("A", sa), ("B", sb)):
        f = figures({n: s[n] for n in names})
        print(f"{label}: {f['first']:.3f} -> {f['last']:.3f} (gain {f['gain']:+.3f}), AUC {f['auc']:.3f}, "
              f"{len(f['below'])} end below {f['below']}, {f['fell']} of {f['corrected']} corrected frames fell "
              f"(worst {f['worst']:+.3f})")


if __name__ == "__main__":
    main()
