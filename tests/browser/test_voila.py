"""The scribble widget and the segmentation app served by Voila, driven in headless Chromium.

Voila runs a notebook's cells before the browser's widget manager exists, so nothing that a
canvas drew while they ran reaches the page: ipycanvas draw commands are messages, not
widget state.  The widgets redraw when a browser view connects (``on_client_ready``), and
that redraw must start with ipycanvas's ``switchCanvas`` command, because the new page's
canvas manager has no current canvas yet (without it the page shows a blank canvas and
reports ``Cannot read properties of undefined (reading 'setAttr')``).

Each test opens a small notebook in Voila and checks (a) that the canvas shows the video
frame (pixels read back from the page against the frame the kernel drew, so a blank or
wrong canvas fails) and (b) that strokes drawn with the mouse arrive in Python with the
object picked in the page and the mouse's coordinates (and, for the widget, that a key
press reaches the canvas).  The last test serves the tutorial
notebook 01 (smoke mode) exactly as the README's ``voila`` command does.  Screenshots go to
tests/_artifacts/.
"""
from __future__ import annotations

import json
import shutil

import numpy as np

from labdriver import (
    CANVAS, REPO_ROOT, check_stroke, drag, read_json_when, stable_box, widget_notebook_cells, write_notebook,
)

APP = ".simwidgets-segmentation-app"
APP_CANVAS = f"{APP} .simwidgets-scribble-canvas canvas"
STRIP = ".simwidgets-confidence-strip"

PIXELS_JS = """([sel, points]) => { const c = document.querySelector(sel);
    const g = c.getContext('2d');
    return points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data)); }"""

SHOWS_FRAME_JS = """([sel, probes]) => { const c = document.querySelector(sel);
    if (!c || !c.width) return false;
    const g = c.getContext('2d');
    let off = 0;
    for (const [x, y, r, gr, b] of probes) {
        const d = g.getImageData(x, y, 1, 1).data;
        if (d[3] < 255) return false;
        off += Math.abs(d[0] - r) + Math.abs(d[1] - gr) + Math.abs(d[2] - b);
    }
    return off / (3 * probes.length) < 12; }"""

# canvas pixels whose colour the kernel reports; the page must show the same (JPEG-coded)
PROBE_CODE = """
def _probes(canvas, frame_idx=0, n=5):
    image = canvas.display_frame(frame_idx)
    ch, cw = canvas.canvas_size
    return [[int(x), int(y), *map(int, image[y, x])]
            for y in np.linspace(10, ch - 11, n).astype(int) for x in np.linspace(10, cw - 11, n).astype(int)]
"""


def _open(page, voila, notebook: str) -> None:
    # Voila executes the notebook while it sends the page: allow for the kernel's start
    page.goto(voila.url(notebook), wait_until="domcontentloaded", timeout=180_000)


def _assert_shows_frame(page, selector: str, probes, timeout: float = 30.0) -> None:
    """Wait until the canvas shows the probed frame colours; on timeout, fail with what it shows."""
    try:
        page.wait_for_function(SHOWS_FRAME_JS, arg=[selector, probes], timeout=timeout * 1000, polling=100)
    except Exception:
        shown = page.evaluate(PIXELS_JS, [selector, [p[:2] for p in probes]])
        raise AssertionError(
            f"{selector} does not show the frame: expected RGB {[p[2:] for p in probes[:5]]}..., "
            f"page has RGBA {shown[:5]}... (page errors: {page.errors})"
        ) from None


def test_scribble_widget_in_voila(page, voila, voila_root, artifacts):
    result, pid, probes = voila_root / "w_result.json", voila_root / "w_kernel.json", voila_root / "w_probes.json"
    setup = (
        "import numpy as np\n"
        + PROBE_CODE
        + "video = sw.load_sample('bear', lazy=True)\n"
        "w = ScribbleWidget(video, width=640, n_objects=2)\n"
        f"atomic_write_text({str(probes)!r}, json.dumps(_probes(w.canvas)))\n"
    )
    extra = "w.canvas.observe(lambda c: _report('object', time.time(), w.scribbles), names='object_id')\n"
    write_notebook(voila_root / "widget.ipynb", widget_notebook_cells(result, pid, setup, extra))
    _open(page, voila, "widget.ipynb")
    voila.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d, timeout=120)["pid"])
    state = read_json_when(result, lambda d: d["kind"] == "ready", timeout=120)
    canvas_size = tuple(state["canvas_size"])
    assert canvas_size == (360, 640)

    # (a) the page shows bear's frame 0, not a blank canvas
    _assert_shows_frame(page, CANVAS, read_json_when(probes, lambda d: len(d) == 25))

    # (b) two strokes, for object 1 (selected at start) and object 2 (picked with its button)
    def count(n):
        return lambda d: sum(len(f) for f in d["scribbles"]["scribbles"]) == n

    box = stable_box(page)
    first = drag(page, box, canvas_size, [(120, 100), (180, 130), (240, 140)])
    read_json_when(result, count(1))
    page.locator(".simwidgets-scribble-widget button", has_text="2").first.click()
    read_json_when(result, lambda d: d["object_id"] == 2)  # the kernel saw the click
    box = stable_box(page)
    second = drag(page, box, canvas_size, [(400, 250), (450, 220), (520, 260)])
    state = read_json_when(result, count(2))

    frames = state["scribbles"]["scribbles"]
    assert state["scribbles"]["sequence"] == "bear" and len(frames) == 82
    assert [len(f) for f in frames[:2]] == [2, 0]
    check_stroke(frames[0][0], first, canvas_size, object_id=1)
    check_stroke(frames[0][1], second, canvas_size, object_id=2)
    # normalised coordinates: x = canvas x / width, y = canvas y / height
    assert np.allclose(frames[0][0]["path"][0], [120 / 640, 100 / 360], atol=0.01), frames[0][0]["path"][0]
    assert np.allclose(frames[0][1]["path"][-1], [520 / 640, 260 / 360], atol=0.01), frames[0][1]["path"][-1]
    # the page shows the second stroke in object 2's colour (DAVIS green, (0, 128, 0))
    (r, g, b, _), = page.evaluate(PIXELS_JS, [CANVAS, [[450, 220]]])
    assert g > 90 and r < 60 and b < 60, (r, g, b)
    # the kernel autosaved them beside the notebook (Voila runs it in its folder)
    autosaved = json.loads((voila_root / "bear.scribbles.json").read_text())
    assert autosaved["scribbles"] == frames
    page.locator(".simwidgets-scribble-widget").first.screenshot(path=str(artifacts / "voila_widget.png"))
    # the keyboard reaches the canvas (it has the focus since the last mouse-down): next frame
    page.keyboard.press("ArrowRight")
    assert read_json_when(result, lambda d: d["frame_idx"] == 1)["kind"] == "frame"
    assert not page.errors, page.errors


APP_SETUP = """
import json, os, time
import numpy as np
from PIL import Image
import simwidgets as sw
from simwidgets.apps import SegmentationApp
from simwidgets.scribbles import atomic_write_text
atomic_write_text(PID, json.dumps({'pid': os.getpid()}))
full = sw.load_sample('bear', lazy=True).clip(35, 41)
h, w = full.frames.shape[1] // 2, full.frames.shape[2] // 2
frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in full.frames])
app = SegmentationApp(frames, model='baseline', width=640, autosave=False, name='bear-clip')
ch, cw = app.canvas.canvas_size
PROBE_CODE
atomic_write_text(PROBES, json.dumps(_probes(app.canvas)))

def report(*_):
    atomic_write_text(RESULT, json.dumps({
        'busy': app.busy, 'rounds': app.session.n_rounds, 'frame_idx': app.frame_idx, 'canvas_size': [ch, cw],
        'n_frames': app.session.n_frames, 'strip_height': app.strip.height,
        'strip': [int(v) for v in app.strip_image[-1, ::80].reshape(-1)],
        'strokes': [[t, s.object_id, s.path.tolist()] for t, s in app.canvas.scribbles],
        'status': app.status.value, 'time': time.time()}))

app.observe(report, names='busy')
app.canvas.observe(report, names=['frame_idx', 'n_strokes'])
report()
"""


def test_segmentation_app_in_voila(page, voila, voila_root, artifacts):
    result, pid, probes = voila_root / "app_result.json", voila_root / "app_kernel.json", voila_root / "app_probes.json"
    setup = (
        APP_SETUP.replace("PROBE_CODE", PROBE_CODE)
        .replace("PID", repr(str(pid))).replace("RESULT", repr(str(result))).replace("PROBES", repr(str(probes)))
    )
    write_notebook(voila_root / "app.ipynb", [setup, "app"])
    _open(page, voila, "app.ipynb")
    voila.kernel_pids.append(read_json_when(pid, lambda d: "pid" in d, timeout=120)["pid"])
    state = read_json_when(result, lambda d: "canvas_size" in d, timeout=120)
    canvas_size = tuple(state["canvas_size"])
    assert canvas_size == (360, 640) and state["frame_idx"] == 0 and state["n_frames"] == 6

    # it renders: the frame on the canvas, the confidence strip drawn (not transparent)
    _assert_shows_frame(page, APP_CANVAS, read_json_when(probes, lambda d: len(d) == 25))
    stable_box(page, STRIP)
    page.wait_for_function(
        "(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d')"
        ".getImageData(0, c.height - 1, 1, 1).data; return d[3] === 255; }",
        arg=STRIP, timeout=20000,
    )
    bottom = page.evaluate(PIXELS_JS, [STRIP, [[x, state["strip_height"] - 1] for x in range(0, 640, 80)]])
    assert [v for rgba in bottom for v in rgba[:3]] == state["strip"], (bottom, state["strip"])

    # a stroke for object 1 (selected at start), then one for the background (its button)
    box = stable_box(page, APP_CANVAS)
    bear = drag(page, box, canvas_size, [(200, 200), (260, 210), (320, 215)])
    state = read_json_when(result, lambda d: len(d["strokes"]) == 1)
    page.locator(f"{APP} button", has_text="bg").first.click()
    box = stable_box(page, APP_CANVAS)
    background = drag(page, box, canvas_size, [(560, 60), (600, 80), (620, 120)])
    state = read_json_when(result, lambda d: len(d["strokes"]) == 2)
    (t0, id0, path0), (t1, id1, path1) = state["strokes"]
    assert (t0, t1) == (0, 0) and (id0, id1) == (1, 0)
    check_stroke({"object_id": id0, "path": path0}, bear, canvas_size, object_id=1)
    check_stroke({"object_id": id1, "path": path1}, background, canvas_size, object_id=0)
    assert np.allclose(path0[0], [200 / 640, 200 / 360], atol=0.01), path0[0]

    # Propagate runs in the kernel and the strip shows the result
    page.get_by_role("button", name="Propagate").click()
    state = read_json_when(result, lambda d: d["rounds"] == 1 and not d["busy"], timeout=120)
    assert "round 1" in state["status"], state["status"]
    page.locator(APP).first.screenshot(path=str(artifacts / "voila_app.png"))
    assert not page.errors, page.errors


def test_tutorial_notebook_01_in_voila(page, voila, voila_root, artifacts):
    """``voila notebooks/01_scribble_widget.ipynb`` (smoke mode): every scribble canvas the
    notebook shows has a picture, and the page reports no error."""
    shutil.copy(REPO_ROOT / "notebooks" / "01_scribble_widget.ipynb", voila_root / "tutorial01.ipynb")
    _open(page, voila, "tutorial01.ipynb")
    canvases = page.locator(CANVAS)
    canvases.first.wait_for(state="visible", timeout=180_000)
    page.wait_for_function(
        """(sel) => { const all = Array.from(document.querySelectorAll(sel));
            return all.length > 0 && all.every(c => { if (!c.width) return false;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let opaque = 0; for (let i = 3; i < d.length; i += 4 * 997) opaque += d[i] === 255;
                return opaque > 0.9 * d.length / (4 * 997); }); }""",
        arg=CANVAS, timeout=60000, polling=200,
    )
    assert canvases.count() >= 2
    page.screenshot(path=str(artifacts / "voila_tutorial01.png"), full_page=True)
    assert not page.errors, page.errors
