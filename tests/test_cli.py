"""The headless CLI end to end on a shipped real sequence, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simwidgets.cli import _transfer_config, build_parser, main

REPO = Path(__file__).resolve().parent.parent
DAVIS = REPO / "data" / "davis"


def test_propagate_from_first_mask_writes_palette_pngs(tmp_path, capsys):
    out = tmp_path / "masks"
    code = main(["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--first-mask",
                 "--model", "baseline", "--no-temporal", "--out", str(out)])
    assert code == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(25)]
    first = Image.open(files[0])
    assert first.mode == "P" and first.size == (854, 480)
    gt = np.asarray(Image.open(DAVIS / "Annotations/480p/dog-agility/00000.png")) > 0
    assert (np.asarray(first) > 0).sum() > 0
    assert np.mean((np.asarray(first) > 0) == gt) > 0.97
    said = capsys.readouterr().out
    assert "s per frame, embedding included" in said
    assert "not adapted: the model has no weights to fine-tune" in said  # the baseline has nothing to adapt


def test_propagate_from_official_scribbles(tmp_path):
    out = tmp_path / "masks"
    code = main(["propagate", "--davis-root", str(DAVIS), "--sequence", "tennis",
                 "--scribbles", str(DAVIS / "Scribbles/tennis/003.json"), "--model", "baseline",
                 "--no-temporal", "--out", str(out)])
    assert code == 0
    labels = set()
    for path in sorted(out.glob("*.png"))[::10]:
        labels |= set(np.unique(np.asarray(Image.open(path))).tolist())
    assert labels == {0, 1, 2}  # player and racket, plus background


def test_evaluate_semi_writes_json(tmp_path):
    out = tmp_path / "result.json"
    masks = tmp_path / "saved"
    code = main(["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--protocol", "semi",
                 "--model", "baseline", "--no-temporal", "--save-masks", str(masks), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    row = result["sequences"]["dog-agility"]
    for key in ("J", "F", "J&F", "seconds", "seconds_per_frame"):
        assert np.isfinite(row[key])
    assert 0 < row["J"] < 1 and 0 < row["F"] < 1
    assert row["J&F"] == pytest.approx((row["J"] + row["F"]) / 2)
    assert result["mean"]["J&F"] == pytest.approx(row["J&F"])
    assert result["protocol"] == "semi" and result["config"]["temporal"] is False
    assert len(list((masks / "dog-agility").glob("*.png"))) == 25


@pytest.mark.parametrize(
    "argv,message",
    [
        (["propagate", "--davis-root", "/nonexistent", "--sequence", "bear", "--first-mask", "--out", "x"],
         "not a DAVIS root"),
        (["propagate", "--davis-root", str(DAVIS), "--sequence", "nope", "--first-mask", "--out", "x"],
         "unknown sequence 'nope'"),
        (["evaluate", "--davis-root", str(DAVIS), "--sequences", "bear,nope", "--json", "x.json"],
         "unknown sequence"),
        (["propagate", "--davis-root", str(DAVIS), "--sequence", "bear", "--scribbles", "/nonexistent.json",
          "--out", "x"], "scribble file not found"),
        (["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility",
          "--scribbles", str(DAVIS / "Scribbles/bear/001.json"), "--out", "x"], "frame-count mismatch"),
        (["propagate", "--davis-root", str(DAVIS), "--sequence", "bear", "--first-mask", "--model",
          "/nonexistent.pt", "--out", "x"], "checkpoint not found"),
    ],
)
def test_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_mask_size_mismatch_is_named(tmp_path):
    root = tmp_path / "davis"
    frames = root / "JPEGImages/480p/toy"
    anns = root / "Annotations/480p/toy"
    frames.mkdir(parents=True)
    anns.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(frames / f"{i:05d}.jpg")
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(anns / f"{i:05d}.png")
    result = subprocess.run(
        [sys.executable, "-m", "simwidgets", "propagate", "--davis-root", str(root), "--sequence", "toy",
         "--first-mask", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: mask") and "30x20" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- output paths and odd options
# Each is checked before any work, so a ten-minute evaluation never ends in a traceback.

def _a_file(tmp: Path) -> Path:
    path = tmp / "taken"
    path.write_text("not a folder")
    return path


OUTPUT_ROWS = [
    ("propagate --out is a file",
     lambda t: ["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--first-mask",
                "--out", str(_a_file(t))], r"--out .*taken is a file; give a folder"),
    ("propagate --out under a file",
     lambda t: ["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--first-mask",
                "--out", str(_a_file(t) / "masks")], r"--out .*masks lies under .*taken, which is a file"),
    ("evaluate --json under a file",
     lambda t: ["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility",
                "--json", str(_a_file(t) / "r.json")], r"--json .*r\.json lies under .*taken, which is a file"),
    ("evaluate --json is a folder",
     lambda t: ["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--json", str(t)],
     r"--json .* is a folder; give a file name"),
    ("evaluate --save-masks is a file",
     lambda t: ["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--json", str(t / "r.json"),
                "--save-masks", str(_a_file(t))], r"--save-masks .*taken is a file"),
    ("train --out under a file",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(_a_file(t) / "m.pt")],
     r"--out .*m\.pt lies under .*taken, which is a file"),
    ("train --out is a folder",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t)], r"--out .* is a folder; give a file name"),
    ("--sequences naming nothing",
     lambda t: ["evaluate", "--davis-root", str(DAVIS), "--sequences", ",", "--json", str(t / "r.json")],
     r"--sequences ',' names no sequence; leave the option out to use all of them"),
    ("--sequences naming one twice",
     lambda t: ["evaluate", "--davis-root", str(DAVIS), "--sequences", "bear,bear", "--json", str(t / "r.json")],
     r"--sequences names a sequence twice"),
    ("train --fold out of range",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--fold", "5/5"],
     r"--fold must be I/K with 0 <= I < K, e.g. 0/5; got '5/5'"),
    ("train --fold not I/K",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--fold", "first"],
     r"--fold must be I/K"),
    ("train --fold with --val-sequences",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--fold", "0/2",
                "--val-sequences", "bear"], r"give --fold or --val-sequences, not both"),
    ("train --fold with more folds than sequences",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--fold", "0/5"],
     r"k must be an integer from 2 to the number of sequences"),
    ("train --top-stride on an architecture without a trunk",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--arch", "fcn-small",
                "--top-stride", "32", "--steps", "1"], r"bad configuration for architecture 'fcn-small'.*top_stride"),
    ("train --head-width 0",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--weights", "none",
                "--head-width", "0", "--steps", "1"], r"head_width must be at least 1; got 0"),
    ("train --val-sequences naming nothing",
     lambda t: ["train", "--davis-root", str(DAVIS), "--out", str(t / "m.pt"), "--val-sequences", " , "],
     r"--val-sequences ' , ' names no sequence"),
]


@pytest.mark.parametrize("row, argv, message", OUTPUT_ROWS, ids=[r for r, _, _ in OUTPUT_ROWS])
def test_output_paths_and_odd_options_are_one_line_errors(row, argv, message, tmp_path, capsys):
    import re

    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert re.search(message, err), err


def test_output_path_errors_come_from_a_subprocess_without_traceback(tmp_path):
    blocker = _a_file(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "simwidgets", "evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility",
         "--json", str(blocker / "r.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and "lies under" in result.stderr


def test_help_does_not_import_torch():
    code = "import runpy, sys\ntry:\n    runpy.run_module('simwidgets', run_name='__main__')\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    for argv in (["--help"], ["train", "--help"]):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "usage:" in done.stdout and done.stdout.strip().endswith("False"), done.stdout[-200:]


def test_propagate_from_a_mask_folder_with_every_export(tmp_path, capsys):
    """References from a folder of masks named by frame number (frame 10 of dog-agility),
    and the COCO, MP4 and GIF exports beside the PNGs."""
    import av
    from simwidgets.export import read_coco
    from simwidgets.palette import save_indexed_png

    given = tmp_path / "given"
    given.mkdir()
    gt = np.asarray(Image.open(DAVIS / "Annotations/480p/dog-agility/00010.png")) > 0
    save_indexed_png(gt.astype(np.uint8), given / "00010.png")
    out = tmp_path / "masks"
    code = main(["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--masks", str(given),
                 "--model", "baseline", "--out", str(out), "--coco", str(tmp_path / "m.json"),
                 "--mp4", str(tmp_path / "o.mp4"), "--gif", str(tmp_path / "o.gif")])
    assert code == 0, capsys.readouterr().err
    pngs = sorted(out.glob("*.png"))
    masks = np.stack([np.asarray(Image.open(p)) for p in pngs])
    assert len(pngs) == 25 and np.mean((masks[10] > 0) == gt) > 0.97
    assert np.array_equal(read_coco(tmp_path / "m.json"), masks)
    with av.open(str(tmp_path / "o.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 25
    assert (tmp_path / "o.gif").stat().st_size > 0
    assert "m.json" in capsys.readouterr().out


def test_a_mask_folder_for_frames_the_video_lacks_is_named(tmp_path, capsys):
    from simwidgets.palette import save_indexed_png

    given = tmp_path / "given"
    given.mkdir()
    save_indexed_png(np.zeros((480, 854), np.uint8), given / "00030.png")
    code = main(["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--masks", str(given),
                 "--model", "baseline", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "mask 00030.png is for frame 30; the video has frames 0..24" in capsys.readouterr().err


def test_train_fold_holds_out_its_fold_and_the_demos(tmp_path, write_davis):
    """``--fold I/K`` trains on the other folds: over K folds every non-demo sequence is
    validated exactly once and never trained on in its own fold; the demos are in none."""
    import argparse

    from simwidgets.cli import _train_split

    video = np.zeros((2, 8, 8, 3), np.uint8)
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, 2:5, 2:5] = 1
    names = ["bear", "a", "b", "c", "d", "e", "f", "g"]
    for name in names:
        root = write_davis(tmp_path / "davis", name, video, masks)
    seen = []
    for i in range(3):
        args = argparse.Namespace(davis_root=root, sequences=None, val_sequences=None, fold=f"{i}/3",
                                  fold_seed=0, n_val=4)
        train, val = _train_split(args)
        assert not set(train) & set(val) and "bear" not in train + val
        assert sorted(train + val) == sorted(set(names) - {"bear"})
        seen += val
    assert sorted(seen) == sorted(set(names) - {"bear"})


def test_masks_propagate_with_the_mask_top_k_and_scribbles_with_the_default():
    """Full masks (--first-mask, --masks, evaluate --protocol semi) vote with
    TransferConfig.for_masks()'s top_k; scribbles with TransferConfig()'s; --top-k wins."""
    import argparse

    from simwidgets.cli import _transfer_config
    from simwidgets.transfer import TransferConfig
    from simwidgets.transfer.config import MASK_REFINE_RADIUS, MASK_TOP_K

    args = argparse.Namespace(top_k=None, temperature=None, window=None, n_context=None, no_temporal=False)
    assert _transfer_config(args, masks=True).top_k == MASK_TOP_K == TransferConfig.for_masks().top_k
    assert _transfer_config(args).top_k == TransferConfig().top_k != MASK_TOP_K
    masks = _transfer_config(args, masks=True)
    assert masks.refine_radius == MASK_REFINE_RADIUS != TransferConfig().refine_radius
    args.top_k = 7
    assert _transfer_config(args, masks=True).top_k == 7 == TransferConfig.for_masks(top_k=7).top_k


def test_mirror_embeds_each_frame_with_its_mirror_image(tmp_path):
    """--mirror/--no-mirror is the transfer option ``mirror`` (recorded in the JSON), on by
    default for full masks; the baseline, whose cells look the same in a mirror, scores
    exactly as without it."""
    scores = {}
    for flag, want in (([], True), (["--no-mirror"], False), (["--mirror"], True)):
        out = tmp_path / f"semi{len(flag)}{want}.json"
        assert main(["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--protocol", "semi",
                     "--model", "baseline", "--no-temporal", "--json", str(out), *flag]) == 0
        result = json.loads(out.read_text())
        assert result["config"]["mirror"] is want
        scores[want] = result["mean"]["J&F"]
    assert scores[True] == pytest.approx(scores[False], abs=1e-6)
    args = build_parser().parse_args(["propagate", "--davis-root", "x", "--sequence", "s", "--scribbles", "f.json",
                                      "--out", "o"])
    assert _transfer_config(args).mirror is False and _transfer_config(args, masks=True).mirror is True


def test_evaluate_semi_adapts_to_frame_0s_mask_by_default(tmp_path, capsys):
    """The semi protocol fine-tunes a copy of the model on frame 0's mask (MASK_ADAPT)
    before each sequence unless --no-adapt; the result file says which, and the scores
    move.  The interactive protocol does not adapt, and refuses --adapt by name."""
    from simwidgets.training.adapt import MASK_ADAPT

    plain, adapted = tmp_path / "plain.json", tmp_path / "adapted.json"
    base = ["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--protocol", "semi",
            "--no-temporal"]
    assert main(base + ["--no-adapt", "--json", str(plain)]) == 0
    assert main(base + ["--json", str(adapted)]) == 0
    a, b = json.loads(plain.read_text()), json.loads(adapted.read_text())
    assert a["adapt"] is None and b["adapt"] == MASK_ADAPT
    assert "adapted" not in a["sequences"]["dog-agility"]
    row = b["sequences"]["dog-agility"]
    assert row["adapted"]["steps"] == MASK_ADAPT["steps"] and row["adapted"]["loss_last"] < row["adapted"]["loss_first"]
    assert row["J&F"] != a["sequences"]["dog-agility"]["J&F"]
    capsys.readouterr()
    code = main(["evaluate", "--davis-root", str(DAVIS), "--sequences", "dog-agility", "--protocol", "interactive",
                 "--adapt", "--json", str(tmp_path / "x.json")])
    assert code != 0 and "--adapt applies to the semi protocol" in capsys.readouterr().err


def test_propagate_adapts_to_the_first_mask_by_default(tmp_path, capsys):
    """--first-mask fine-tunes a copy of the model on frame 0's mask before the transfer
    (it says so, with its steps), --no-adapt does not, and the masks differ; scribbles
    refuse --adapt by name, with no traceback."""
    from simwidgets.training.adapt import MASK_ADAPT

    base = ["propagate", "--davis-root", str(DAVIS), "--sequence", "dog-agility", "--first-mask", "--no-temporal"]
    assert main(base + ["--out", str(tmp_path / "adapted")]) == 0
    said = capsys.readouterr().out
    assert f"adapted a copy of the model to the reference masks of frames [0]: {MASK_ADAPT['steps']} steps" in said
    assert "embedding and adaptation included" in said
    assert main(base + ["--no-adapt", "--out", str(tmp_path / "plain")]) == 0
    assert "adapted" not in capsys.readouterr().out
    adapted = [np.asarray(Image.open(f)) for f in sorted((tmp_path / "adapted").glob("*.png"))]
    plain = [np.asarray(Image.open(f)) for f in sorted((tmp_path / "plain").glob("*.png"))]
    assert len(adapted) == len(plain) == 25
    assert np.array_equal(adapted[0], plain[0])  # frame 0 is the given mask either way
    assert any(not np.array_equal(x, y) for x, y in zip(adapted[1:], plain[1:]))
    code = main(["propagate", "--davis-root", str(DAVIS), "--sequence", "tennis", "--scribbles",
                 str(DAVIS / "Scribbles/tennis/003.json"), "--adapt", "--out", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2 and "--adapt applies to masks" in captured.err and "Traceback" not in captured.err
