"""The embedding network compiled ahead of time for this CPU against the network as PyTorch
runs it (``simwidgets.models.compiled``), all in one run on this machine.

    .venv/bin/python benchmarks/bench_compiled.py            # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_compiled.py --frames 24 --passes 1   # shorter

Prints, with the machine and its load, and writes benchmarks/results/compiled_network.{json,md}:

* building a package (``precompile``) from nothing, in a fresh process with empty package and
  inductor caches (what a user's first ``python -m simwidgets compile`` costs), then loading
  it in another fresh process;
* embedding rate at 480p (bear, ``default.pt``): plain network and compiled, each also with
  mirror averaging, interleaved over ``--passes`` passes;
* issue 14's rounds through ``InteractiveSession`` (bear, 80 frames at 854x480, scribble 001
  then correction 002), plain and compiled, interleaved; and the largest difference between
  the two sessions' embeddings and masks.

The packages are built into a temporary folder, never into the user's cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import simwidgets as sw  # noqa: E402
from bench_transfer import _bear, machine  # noqa: E402
from simwidgets.session import InteractiveSession  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
HEIGHT, WIDTH = 480, 854

_CHILD = """
import json, sys, time
start = time.perf_counter()
import simwidgets as sw
from simwidgets.models.compiled import compiled_runner, _network_and_shape
model = sw.load_model("default")
imported = time.perf_counter() - start
if sys.argv[1] == "build":
    start = time.perf_counter()
    path = sw.precompile(model, {h}, {w}, mirror=sys.argv[2] == "mirror", precision="fp32")
    print(json.dumps({{"build_s": time.perf_counter() - start, "path": str(path),
                       "package_mib": path.stat().st_size / 2**20}}))
else:
    import torch
    network, shape = _network_and_shape(model, {h}, {w}, 1)
    start = time.perf_counter()
    runner = compiled_runner(network, shape, None, False, "cached")
    loaded = time.perf_counter() - start
    with torch.inference_mode():
        start = time.perf_counter()
        runner(torch.rand(shape))
    print(json.dumps({{"import_s": imported, "load_s": loaded, "first_call_s": time.perf_counter() - start,
                       "loaded": runner is not None}}))
"""


def child(mode: str, env: dict, mirror: bool = False) -> dict:
    code = _CHILD.format(h=HEIGHT, w=WIDTH)
    out = subprocess.run([sys.executable, "-c", code, mode, "mirror" if mirror else "plain"], env=env,
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fps(model, frames, mirror: bool, compile: str) -> float:
    model.embed(frames[:1], precision="fp32", mirror=mirror, compile=compile)  # warm-up (and load)
    start = time.perf_counter()
    model.embed(frames, precision="fp32", mirror=mirror, compile=compile)
    return len(frames) / (time.perf_counter() - start)


def rounds(video, compile: str) -> tuple[dict, InteractiveSession]:
    os.environ["SIMWIDGETS_COMPILE"] = compile
    session = InteractiveSession(video, model="default")
    session.add_scribbles(video.scribbles["001"])
    session.propagate()
    session.add_scribbles(video.scribbles["002"])
    session.propagate()
    first, correction = session.history
    return {"first_round_s": first.seconds, "embed_s": first.embed_seconds, "correction_round_s": correction.seconds}, session


def markdown(result: dict) -> str:
    m = result["machine"]
    b, load = result["build"], result["load"]
    lines = [
        f"# The embedding network compiled for this CPU ({result['date']})",
        "",
        f"Machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, {m['torch_threads']} torch threads, "
        f"torch {m['torch']}, Python {m['python']}. Load average at start {m['load_average_start']}, at end "
        f"{m['load_average_end']}. Command: `{result['command']}` (commit {result['commit']}).",
        "",
        "## Building and loading a package (`default.pt`, 480x854 frames, float32)",
        "",
        f"- build from nothing (fresh process, empty package and inductor caches): {b['plain']['build_s']:.1f} s "
        f"plain, {b['mirror']['build_s']:.1f} s with mirror averaging; package {b['plain']['package_mib']:.1f} MiB",
        f"- load in a fresh process: {load['load_s']:.2f} s, then its first frame {load['first_call_s']:.3f} s "
        f"(importing simwidgets and loading the model before it: {load['import_s']:.1f} s)",
        "",
        f"## Embedding rate at 480p (bear, {result['fps_frames']} frames, float32; pass by pass)",
        "",
        "| pass | plain | compiled | plain, mirror averaged | compiled, mirror averaged |",
        "|---|---|---|---|---|",
    ]
    for i, p in enumerate(result["fps"]):
        lines.append(f"| {i + 1} | {p['plain']:.2f} frames/s | {p['compiled']:.2f} frames/s | "
                     f"{p['plain_mirror']:.2f} frames/s | {p['compiled_mirror']:.2f} frames/s |")
    lines += [
        "",
        f"## Issue 14's rounds (bear, {result['round_frames']} frames at 854x480, `InteractiveSession`, default model; "
        "scribble 001, then correction 002)",
        "",
        "| pass | first round, plain | first round, compiled | correction, plain | correction, compiled |",
        "|---|---|---|---|---|",
    ]
    for i, p in enumerate(result["rounds"]):
        lines.append(f"| {i + 1} | {p['off']['first_round_s']:.2f} s ({p['off']['embed_s']:.1f} s network) | "
                     f"{p['cached']['first_round_s']:.2f} s ({p['cached']['embed_s']:.1f} s network) | "
                     f"{p['off']['correction_round_s']:.2f} s | {p['cached']['correction_round_s']:.2f} s |")
    d = result["difference"]
    lines += [
        "",
        f"Targets: first round <= 10 s, correction <= 1 s. The two sessions' embeddings differ by at most "
        f"{d['embedding_max_abs']:.1e}; their masks after the correction differ on {d['mask_pixels_differ']} of "
        f"{d['mask_pixels']} pixels.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80, help="frames of bear in the rounds")
    parser.add_argument("--fps-frames", type=int, default=12, help="frames per embedding-rate measurement")
    parser.add_argument("--passes", type=int, default=2, help="interleaved passes of each measurement")
    parser.add_argument("--out", default=str(RESULTS), help="folder for compiled_network.{json,md}")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit,
              "command": "python benchmarks/bench_compiled.py " + " ".join(sys.argv[1:]),
              "fps_frames": args.fps_frames, "round_frames": args.frames}
    print("machine:", json.dumps(result["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as packages, tempfile.TemporaryDirectory() as inductor:
        env = dict(os.environ, SIMWIDGETS_CACHE_DIR=packages, TORCHINDUCTOR_CACHE_DIR=inductor)
        result["build"] = {"plain": child("build", env), "mirror": child("build", env, mirror=True)}
        print("build:", json.dumps(result["build"]), flush=True)
        result["load"] = child("load", env)
        print("load:", json.dumps(result["load"]), flush=True)
        os.environ["SIMWIDGETS_CACHE_DIR"] = packages
        os.environ["SIMWIDGETS_PRECISION"] = "fp32"
        model = sw.load_model("default")
        frames = np.asarray(_bear(args.fps_frames).frames[: args.fps_frames])
        result["fps"] = []
        for _ in range(args.passes):
            row = {"plain": fps(model, frames, False, "off"), "compiled": fps(model, frames, False, "cached"),
                   "plain_mirror": fps(model, frames, True, "off"), "compiled_mirror": fps(model, frames, True, "cached")}
            result["fps"].append(row)
            print("fps:", json.dumps(row), flush=True)
        video = _bear(args.frames)
        result["rounds"] = []
        for _ in range(args.passes):
            off, plain_session = rounds(video, "off")
            cached, compiled_session = rounds(video, "cached")
            result["rounds"].append({"off": off, "cached": cached})
            print("rounds:", json.dumps(result["rounds"][-1]), flush=True)
        a = plain_session.transfer._cache
        b = compiled_session.transfer._cache
        worst = max(float((a[i].float() - b[i].float()).abs().max()) for i in range(video.n_frames))
        masks_a, masks_b = plain_session.result.masks, compiled_session.result.masks
        result["difference"] = {"embedding_max_abs": worst, "mask_pixels_differ": int((masks_a != masks_b).sum()),
                                "mask_pixels": int(masks_a.size)}
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compiled_network.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "compiled_network.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
