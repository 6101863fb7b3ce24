"""The segmentation app in a real browser: headless Chromium drives JupyterLab.

A notebook shows the app on a short clip of bear (10 frames at half 480p, the baseline
embedding).  The test paints the bear as object 1 and some background on frame 0 with the
mouse, clicks the confidence strip to show frame 7 and reads the canvas pixels on the bear
there, presses Propagate, and checks that frame 7 now shows the red overlay of object 1 on
the bear (and nothing on the background point), that the kernel ran one round from the
mouse's strokes, and that the strip got its confidence bars.  A screenshot goes to
tests/_artifacts/app_browser.png.
"""
from __future__ import annotations

from labdriver import drag, open_and_run, read_json_when, stable_box, write_notebook

APP = ".simwidgets-segmentation-app"
CANVAS = f"{APP} .simwidgets-scribble-canvas canvas"
STRIP = ".simwidgets-confidence-strip"
SHOWN = 7  # the frame inspected after propagation (strokes are on frame 0)

PIXEL_JS = """([sel, points]) => { const c = document.querySelector(sel);
    const g = c.getContext('2d');
    return points.map(([x, y]) => Array.from(g.getImageData(Math.round(x), Math.round(y), 1, 1).data)); }"""

SETUP = """
import json, os, time
import numpy as np
from PIL import Image
from scipy import ndimage
import simwidgets as sw
from simwidgets.apps import SegmentationApp
from simwidgets.scribbles import atomic_write_text
atomic_write_text(PID, json.dumps({'pid': os.getpid()}))
full = sw.load_sample('bear', lazy=True).clip(35, 45)
h, w = full.frames.shape[1] // 2, full.frames.shape[2] // 2
frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in full.frames])
truth = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8)).resize((w, h), Image.NEAREST)) for m in full.masks])
app = SegmentationApp(frames, model='baseline', width=640, autosave=False, name='bear-clip')
ch, cw = app.canvas.canvas_size
to_canvas = lambda r, c: [float((c + 0.5) * cw / w), float((r + 0.5) * ch / h)]

def inside(mask, margin):
    '''The pixel deepest inside ``mask`` and a horizontal run through it, ``margin`` px in.'''
    depth = ndimage.distance_transform_edt(mask)
    r, c = np.unravel_index(depth.argmax(), mask.shape)
    cols = np.flatnonzero(depth[r] > margin)
    cols = cols[np.abs(cols - c) < 60]
    return (int(r), int(c)), [to_canvas(r, cc) for cc in np.linspace(cols.min(), cols.max(), 6)]

bear0, bear_stroke = inside(truth[0] == 1, 6)
_, bg_stroke = inside(truth[0] == 0, 25)
bear7, _ = inside(truth[SHOWN] == 1, 6)
bg7, _ = inside(truth[SHOWN] == 0, 25)

def report(*_):
    atomic_write_text(RESULT, json.dumps({
        'ready': True, 'busy': app.busy, 'rounds': app.session.n_rounds, 'frame_idx': app.frame_idx,
        'canvas_size': [ch, cw], 'n_frames': app.session.n_frames,
        'strokes': [[s.object_id, len(s.path)] for _, s in app.canvas.scribbles],
        'bear_stroke': bear_stroke, 'bg_stroke': bg_stroke,
        'bear7': to_canvas(*bear7), 'bg7': to_canvas(*bg7),
        'mask7_at_bear': None if app.masks is None else int(app.masks[SHOWN][bear7]),
        'mask7_at_bg': None if app.masks is None else int(app.masks[SHOWN][bg7]),
        'status': app.status.value, 'time': time.time()}))

app.observe(report, names='busy')
app.canvas.observe(report, names=['frame_idx', 'n_strokes'])
report()
"""


def test_draw_propagate_and_see_the_overlay_on_another_frame(page, lab, lab_root, artifacts):
    result, pid = lab_root / "app_result.json", lab_root / "app_kernel.json"
    setup = SETUP.replace("PID", repr(str(pid))).replace("RESULT", repr(str(result))).replace("SHOWN", str(SHOWN))
    write_notebook(lab_root / "app.ipynb", [setup, "app"])
    open_and_run(page, lab, "app.ipynb")
    lab.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d, timeout=60)["pid"])
    state = read_json_when(result, lambda d: d.get("ready"), timeout=90)
    canvas_size = tuple(state["canvas_size"])
    assert canvas_size == (360, 640) and state["frame_idx"] == 0

    box = stable_box(page, CANVAS)
    drag(page, box, canvas_size, state["bear_stroke"])  # object 1 is selected at start
    read_json_when(result, lambda d: len(d["strokes"]) == 1)
    page.locator(f"{APP} button", has_text="bg").first.click()
    box = stable_box(page, CANVAS)
    drag(page, box, canvas_size, state["bg_stroke"])
    state = read_json_when(result, lambda d: len(d["strokes"]) == 2)
    assert [object_id for object_id, _ in state["strokes"]] == [1, 0]

    # show frame 7 with a click on the confidence strip, and look at it before propagating
    strip = stable_box(page, STRIP)
    page.mouse.click(strip["x"] + (SHOWN + 0.5) * strip["width"] / state["n_frames"], strip["y"] + strip["height"] / 2)
    state = read_json_when(result, lambda d: d["frame_idx"] == SHOWN)
    points = [state["bear7"], state["bg7"]]
    page.wait_for_timeout(500)  # the new frame's image is painted
    before = page.evaluate(PIXEL_JS, [CANVAS, points])
    strip_before = page.evaluate(PIXEL_JS, [STRIP, [[strip["width"] * (SHOWN + 0.5) / state["n_frames"], 29]]])

    page.get_by_role("button", name="Propagate").click()
    state = read_json_when(result, lambda d: d["rounds"] == 1 and not d["busy"], timeout=120)
    assert "round 1" in state["status"], state["status"]
    assert state["mask7_at_bear"] == 1 and state["mask7_at_bg"] == 0  # what the kernel computed
    assert state["frame_idx"] == SHOWN

    # frame 7 in the browser: the bear turned red (DAVIS object 1 is (128, 0, 0), blended at
    # opacity 0.45: red minus green grows by 0.45 * (128 - (R - G)), about 50 on the dark bear),
    # the background did not change
    redder = 0.45 * (128 - (before[0][0] - before[0][1])) - 15
    page.wait_for_function(
        """([sel, x, y, rg0, redder]) => { const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data;
            return (d[0] - d[1]) - rg0 > redder; }""",
        arg=[CANVAS, *state["bear7"], before[0][0] - before[0][1], redder], timeout=20000,
    )
    after = page.evaluate(PIXEL_JS, [CANVAS, points])
    (r0, g0, b0, _), (r1, g1, b1, _) = before[0], after[0]
    assert (r1 - g1) - (r0 - g0) > redder and b1 < b0, (before[0], after[0])
    assert max(abs(a - b) for a, b in zip(before[1][:3], after[1][:3])) <= 8, (before[1], after[1])
    # the strip's bar for frame 7 is drawn now (it was the empty grey before); the strip is a
    # canvas of its own, painted by its own message, which can arrive after the frame's overlay
    bar = [strip["width"] * (SHOWN + 0.5) / state["n_frames"], 29]
    page.wait_for_function(
        """([sel, x, y]) => { const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data;
            return !(d[0] === 235 && d[1] === 235 && d[2] === 235); }""",
        arg=[STRIP, *bar], timeout=20000,
    )
    strip_after = page.evaluate(PIXEL_JS, [STRIP, [bar]])
    assert strip_before[0][:3] == [235, 235, 235] and strip_after[0][:3] != [235, 235, 235]
    page.locator(APP).first.screenshot(path=str(artifacts / "app_browser.png"))
    assert not page.errors, page.errors
