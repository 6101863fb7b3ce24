"""The scribble widget in Notebook 7 (headless Chromium): two objects painted with the mouse,
object and frame picked with the control buttons; the kernel-side strokes match the mouse.

Keyboard shortcuts are not exercised here: Notebook 7 handles its command-mode shortcuts in
the capture phase, before the canvas sees the key (``m`` would turn the cell into markdown),
and ipycanvas offers no way to mark its element with ``data-lm-suppress-shortcuts``.
JupyterLab delivers the keys to the canvas (tested in test_widget_browser.py).
"""
from __future__ import annotations

import numpy as np

from labdriver import drag, open_and_run, read_json_when, stable_box, widget_notebook_cells, write_notebook


def test_paint_two_objects_in_notebook7(page, notebook7, lab_root, artifacts):
    result, pid = lab_root / "nb7_result.json", lab_root / "nb7_kernel.json"
    setup = (
        "video = sw.load_sample('dog-agility', lazy=True)\n"
        "w = ScribbleWidget(video, width=480, n_objects=2, autosave=False)\n"
    )
    write_notebook(lab_root / "nb7.ipynb", widget_notebook_cells(result, pid, setup))
    open_and_run(page, notebook7, "nb7.ipynb")
    notebook7.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d)["pid"])
    state = read_json_when(result, lambda d: d["kind"] == "ready", timeout=60)
    canvas_size = tuple(state["canvas_size"])
    assert canvas_size == (270, 480)
    # Notebook 7.6 itself reports one page error while loading any notebook here (a settings
    # "schema" TypeError, with or without widgets): only errors from now on are ours
    page.errors.clear()
    box = stable_box(page)

    def count(n):
        return lambda d: sum(len(f) for f in d["scribbles"]["scribbles"]) == n

    first = drag(page, box, canvas_size, [(50, 50), (150, 80)])
    read_json_when(result, count(1))
    widget = page.locator(".simwidgets-scribble-widget").first
    widget.locator("button", has_text="2").first.click()
    widget.locator("button:has(i.fa-chevron-right)").first.click()
    read_json_when(result, lambda d: d["frame_idx"] == 1)
    second = drag(page, box, canvas_size, [(300, 200), (400, 150)])
    state = read_json_when(result, count(2))

    frames = state["scribbles"]["scribbles"]
    assert [len(f) for f in frames[:2]] == [1, 1] and len(frames) == 25
    for stroke, drawn, object_id in ((frames[0][0], first, 1), (frames[1][0], second, 2)):
        path = np.asarray(stroke["path"]) * [480, 270]
        assert stroke["object_id"] == object_id
        assert np.hypot(*(path[0] - drawn[0])) <= 3 and np.hypot(*(path[-1] - drawn[-1])) <= 3
    page.screenshot(path=str(artifacts / "widget_notebook7.png"))
    assert not page.errors, page.errors
