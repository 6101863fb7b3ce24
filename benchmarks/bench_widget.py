"""Benchmark the scribble widget in a real browser (headless Chromium + JupyterLab).

Measures, on the shipped bear sequence shown at its full 854x480:

* **frame switch**: from the ``ArrowRight`` keydown on the canvas to the new frame on
  screen (the last change of the composite canvas's pixels, so the mask overlay is
  included; in practice the first change is the last, as one batched message redraws
  all layers), with and without the mask overlay;
* **stroke latency**: from the mouse-up (taken just before Playwright releases the
  button) to the stroke being committed in the kernel's Python state (the ``on_change``
  event's time stamp, i.e. after it was autosaved), for strokes of ~40 points;
* for context, the kernel-side cost of one frame redraw (decode, resize, JPEG/PNG encode)
  measured in this process without a browser.

Usage::

    .venv/bin/python benchmarks/bench_widget.py [--switches 20] [--strokes 15]

Prints the figures and writes benchmarks/results/widget.json.  Not a test: timings depend
on the machine (here a shared 2-core VM).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "browser"))

from labdriver import (  # noqa: E402
    CANVAS, CHROMIUM, JupyterLab, canvas_signature_js, drag, launch_browser, missing_requirements,
    open_and_run, read_json_when, stable_box, widget_notebook_cells, write_notebook,
)

SWITCH_JS = """async ([sel, quietMs, timeoutMs]) => {
    %s
    const c = document.querySelector(sel);
    const before = sig(c);
    const t0 = performance.now();
    c.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true, cancelable: true}));
    let first = null, last = null, current = before;
    while (performance.now() - t0 < timeoutMs) {
        await new Promise(r => setTimeout(r, 2));
        const s = sig(c);
        if (s !== current) {
            const now = performance.now() - t0;
            if (first === null) first = now;
            last = now;
            current = s;
        } else if (last !== null && performance.now() - t0 - last > quietMs) {
            break;
        }
    }
    return {first: first, settled: last};
}""" % canvas_signature_js()


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
        "n": len(ordered),
    }


def kernel_side_redraw_ms(repeats: int = 20) -> float:
    """Python cost of one frame change (no browser attached: messages go nowhere)."""
    import simwidgets as sw
    from simwidgets.widgets import ScribbleWidget

    video = sw.load_sample("bear", lazy=True)
    w = ScribbleWidget(video, masks=video.masks, width=854, autosave=False)
    start = time.perf_counter()
    for k in range(repeats):
        w.frame_idx = 1 + k
    return (time.perf_counter() - start) / repeats * 1000


def run(switches: int, strokes: int) -> dict:
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-widget-") as tmp:
        root = Path(tmp)
        result, pid = root / "result.json", root / "kernel.json"
        setup = (
            "video = sw.load_sample('bear', lazy=True)\n"
            "w = ScribbleWidget(video, masks=video.masks, width=854, n_objects=2)\n"
        )
        write_notebook(root / "bench.ipynb", widget_notebook_cells(result, pid, setup))
        with JupyterLab(root) as lab, sync_playwright() as playwright:
            browser = launch_browser(playwright)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1300}).new_page()
                open_and_run(page, lab, "bench.ipynb")
                lab.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d)["pid"])
                state = read_json_when(result, lambda d: d["kind"] == "ready", timeout=60)
                canvas_size = tuple(state["canvas_size"])
                assert canvas_size == (480, 854), canvas_size
                box = stable_box(page)
                page.mouse.click(*_page_point(box, canvas_size, 5, 5))  # focus; a one-point stroke
                read_json_when(result, lambda d: _count(d) == 1)
                page.keyboard.press("z")
                read_json_when(result, lambda d: _count(d) == 0)
                time.sleep(0.5)

                figures = {}
                for label, toggle in (("with_masks", None), ("without_masks", "m")):
                    if toggle:
                        page.keyboard.press(toggle)
                        time.sleep(0.5)
                    settled = []
                    page.evaluate("(sel) => document.querySelector(sel).focus()", CANVAS)
                    for _ in range(switches + 2):
                        timing = page.evaluate(SWITCH_JS, [CANVAS, 250, 5000])
                        if timing["first"] is None:
                            raise RuntimeError("the canvas did not change after ArrowRight")
                        settled.append(timing["settled"])
                    # the first two switches warm caches (JIT, decoder): not counted
                    figures[f"frame_switch_{label}"] = summary(settled[2:])

                latencies = []
                for k in range(strokes):
                    y = 60 + 25 * (k % 16)
                    drag(page, box, canvas_size, [(100, y), (300, y + 10), (500, y)], steps=13, release=False)
                    time.sleep(0.1)  # let the moves reach the kernel: measure the mouse-up alone
                    t0 = time.time()
                    page.mouse.up()
                    state = read_json_when(result, lambda d, n=k + 1: _count(d) == n and d["kind"] == "add")
                    latencies.append((state["time"] - t0) * 1000)
                figures["mouse_up_to_python_state"] = summary(latencies)
            finally:
                browser.close()

    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    import jupyterlab

    figures["kernel_side_redraw_ms_per_frame"] = round(kernel_side_redraw_ms(), 1)
    return {
        "benchmark": "scribble widget in headless Chromium + JupyterLab, bear 854x480, masks overlaid",
        "figures": figures,
        "environment": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "python": platform.python_version(),
            "chromium": chromium,
            "jupyterlab": jupyterlab.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
    }


def _count(data) -> int:
    return sum(len(f) for f in data["scribbles"]["scribbles"])


def _page_point(box, canvas_size, x, y):
    ch, cw = canvas_size
    return box["x"] + x * box["width"] / cw, box["y"] + y * box["height"] / ch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--strokes", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "widget.json")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"bench_widget: cannot run: {reason}", file=sys.stderr)
        return 2
    report = run(args.switches, args.strokes)
    for name, value in report["figures"].items():
        if isinstance(value, dict):
            print(f"{name:45s} median {value['median_ms']:7.1f} ms   p90 {value['p90_ms']:7.1f} ms   (n={value['n']})")
        else:
            print(f"{name:45s} {value:7.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
