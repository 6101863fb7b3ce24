"""The scribble widget in a real browser: headless Chromium drives JupyterLab with the mouse.

One notebook shows the widget on the shipped bear sequence.  The test draws two strokes
for object 1 and 2 (selected with the object buttons), a third one, undoes it with ``z``,
goes to the next frame with the arrow key, picks object 1 with the ``1`` key and draws
again; then it checks the kernel-side scribbles against what the mouse did (stroke
count, object ids, frames, every point within a few pixels) and the autosave file, and
keeps a screenshot in tests/_artifacts/.
"""
from __future__ import annotations

import json

from labdriver import CANVAS, check_stroke, drag, open_and_run, read_json_when, stable_box, widget_notebook_cells, write_notebook


def test_draw_undo_change_frame_draw_again(page, lab, lab_root, artifacts):
    result, pid = lab_root / "result.json", lab_root / "kernel.json"
    setup = (
        "video = sw.load_sample('bear', lazy=True)\n"
        "w = ScribbleWidget(video, masks=video.masks, width=640, n_objects=2)\n"
    )
    write_notebook(lab_root / "draw.ipynb", widget_notebook_cells(result, pid, setup))
    open_and_run(page, lab, "draw.ipynb")
    lab.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d)["pid"])
    state = read_json_when(result, lambda d: d["kind"] == "ready", timeout=60)
    canvas_size = tuple(state["canvas_size"])
    assert canvas_size == (360, 640)

    box = stable_box(page)
    # the frame has been painted (the composite canvas is not blank)
    page.wait_for_function(
        "(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4001) n += d[i]; return n > 0; }",
        arg=CANVAS, timeout=20000,
    )

    def count(n):
        return lambda d: sum(len(f) for f in d["scribbles"]["scribbles"]) == n

    stroke_a = drag(page, box, canvas_size, [(120, 100), (180, 130), (240, 140)])
    read_json_when(result, count(1))
    page.locator(".simwidgets-scribble-widget button", has_text="2").first.click()
    stroke_b = drag(page, box, canvas_size, [(400, 250), (450, 220), (520, 260)])
    read_json_when(result, count(2))
    drag(page, box, canvas_size, [(300, 300), (350, 320)])
    read_json_when(result, count(3))
    page.keyboard.press("z")  # the canvas has focus since the last mouse-down
    state = read_json_when(result, count(2))
    assert state["kind"] == "undo"
    page.keyboard.press("ArrowRight")
    read_json_when(result, lambda d: d["frame_idx"] == 1)
    page.keyboard.press("1")
    stroke_d = drag(page, box, canvas_size, [(200, 200), (260, 180), (330, 210), (380, 200)])
    state = read_json_when(result, count(3))

    frames = state["scribbles"]["scribbles"]
    assert state["scribbles"]["sequence"] == "bear" and len(frames) == 82
    assert [len(f) for f in frames[:3]] == [2, 1, 0]
    assert sum(len(f) for f in frames[2:]) == 0
    check_stroke(frames[0][0], stroke_a, canvas_size, object_id=1)
    check_stroke(frames[0][1], stroke_b, canvas_size, object_id=2)
    check_stroke(frames[1][0], stroke_d, canvas_size, object_id=1)

    # the kernel autosaved the same strokes beside the notebook
    autosaved = json.loads((lab_root / "bear.scribbles.json").read_text())
    assert autosaved["scribbles"] == state["scribbles"]["scribbles"]

    # the canvas shows the new stroke of frame 1 in object 1's colour (DAVIS red)
    x, y = 260, 180
    pixel = page.evaluate(
        "([sel, x, y]) => { const c = document.querySelector(sel);"
        " return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data); }",
        [CANVAS, x, y],
    )
    assert pixel[0] > 100 and pixel[1] < 60 and pixel[2] < 60, pixel
    page.locator(".simwidgets-scribble-widget").first.screenshot(path=str(artifacts / "widget_browser.png"))
    assert not page.errors, page.errors
