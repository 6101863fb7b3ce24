"""benchmarks/merge_interactive.py: parts of a protocol run over disjoint sequences join into
the report one run over all of them gives (checked on a committed 28-sequence result, cut
in two)."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from merge_interactive import merge  # noqa: E402

WHOLE = json.loads((BENCHMARKS / "results" / "interactive_kfold_mirror_off.json").read_text())


def _part(names):
    part = copy.deepcopy(WHOLE)
    for model in part["models"].values():
        model["sequences"] = {n: r for n, r in model["sequences"].items() if n in names}
    return part


def test_two_parts_merge_into_the_whole_run():
    (name, whole), = WHOLE["models"].items()
    names = list(whole["sequences"])
    merged = merge([_part(names[:11]), _part(names[11:])])["models"][name]
    assert sorted(merged["sequences"]) == sorted(names)
    for key in ("mean_first", "mean_last", "gain", "corrections", "corrected_frames_fell",
                "corrected_frames_J_fell", "corrected_frames_F_fell", "corrected_frame_worst"):
        assert merged["loop"][key] == pytest.approx(whole["loop"][key]), key
    assert sorted(merged["loop"]["ends_below_start"]) == sorted(whole["loop"]["ends_below_start"])
    assert merged["mean"]["J&F"] == pytest.approx(whole["mean"]["J&F"])  # that run was not pooled either
    assert merged["mean"]["n"] == len(names) and not merged["mean_is_pooled"]


def test_a_merged_result_takes_one_more_part():
    """A fold whose model finished late is merged into the result of the others."""
    (name, whole), = WHOLE["models"].items()
    names = list(whole["sequences"])
    first = merge([_part(names[:8]), _part(names[8:16])])
    first["models"][name]["commit"] = ["abc"]  # as an earlier merge writes it
    merged = merge([first, _part(names[16:])])["models"][name]
    assert sorted(merged["sequences"]) == sorted(names)
    assert merged["loop"]["gain"] == pytest.approx(whole["loop"]["gain"])
    assert merged["loop"]["corrected_frames_fell"] == whole["loop"]["corrected_frames_fell"]
    assert [p["sequences"] for p in merged["parts"]] == [names[:8], names[8:16], names[16:]]
    assert "abc" in merged["commit"]


def test_overlapping_or_unlike_parts_are_refused():
    (name, whole), = WHOLE["models"].items()
    names = list(whole["sequences"])
    with pytest.raises(ValueError, match="in two parts"):
        merge([_part(names[:11]), _part(names[10:])])
    other = _part(names[11:])
    other["interactions"] = 5
    with pytest.raises(ValueError, match="interactions"):
        merge([_part(names[:11]), other])
