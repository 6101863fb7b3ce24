"""The segmentation app: scribble, propagate, inspect, correct, export, in one widget.

::

    from simwidgets.apps import SegmentationApp
    app = SegmentationApp(sw.load_sample("bear"), model="default")
    app            # paint, press Propagate, click the strip, correct, export

It composes the :class:`~simwidgets.widgets.ScribbleWidget` (canvas, objects, brush,
undo, frame slider, autosave) with the controls of an interactive session:

* **Propagate** runs :meth:`InteractiveSession.propagate` on the current strokes in a
  background thread: the frame on screen is previewed at once (its votes from the strokes
  alone), the kernel and the widget stay usable meanwhile (a progress bar follows the
  embedding, then the labelling), and the masks appear as the overlay on every frame when
  the round ends; **Cancel** stops a round and leaves the session as it was;
* a **confidence strip** under the canvas, one column per frame: bar height and colour
  show how unsure the transfer is (entropy of its votes; full height and red at 0.2 or
  the largest entropy if higher), orange marks frames with strokes, black marks the
  frame shown; clicking it shows that frame;
* **Suggest next frame** jumps to the least certain frame without strokes;
* **options** (temporal propagation, top-k, temperature, window) for the next round;
* **Export** the masks as DAVIS palette PNGs (``<folder>/%05d.png``), COCO run-length
  JSON, or the overlay as an MP4 or a GIF (:mod:`simwidgets.export`);
* **Use as references**: a folder of masks named by frame number (a mask from another
  tool, or an earlier export) joins the strokes as references for the next round.

The widget stays consistent when work fails or is long: buttons are disabled while it
works (``busy`` is True), the previous masks stay until a round succeeds, an error is
shown in the status line and everything is re-enabled.  Strokes drawn meanwhile count
for the next round.  This module imports torch (through the session); the
:mod:`simwidgets.widgets` package itself stays torch-free.
"""
from __future__ import annotations

import html
import threading
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import Canvas, hold_canvas

from ..errors import BadInputError
from ..export import overlay_animation, overlay_video, write_coco, write_masks
from ..session import InteractiveSession
from ..video import read_mask_folder
from ..widgets import ScribbleWidget

__all__ = ["SegmentationApp"]

STRIP_HEIGHT = 30


class RoundCancelled(Exception):
    """Raised inside a round's progress callback to stop it (the Cancel button)."""


#: what the Export button writes: format -> the suffix of its default path
EXPORT_FORMATS = {"PNG masks": "_masks", "COCO RLE": "_masks.coco.json", "MP4 overlay": "_overlay.mp4",
                  "GIF overlay": "_overlay.gif"}
_MARK = 4  # rows of the strip used for the "has strokes" mark


def _strip_colour(value: float) -> tuple[int, int, int]:
    """Green (sure) -> yellow -> red (unsure) for ``value`` in [0, 1]."""
    value = float(np.clip(value, 0, 1))
    if value < 0.5:
        return int(round(510 * value)), 170, 60
    return 230, int(round(170 * (2 - 2 * value))), 60


class SegmentationApp(widgets.VBox):
    """Scribble on a video, propagate the labels, inspect per-frame confidence, correct, export.

    Parameters
    ----------
    video : VideoSequence, ``(T, H, W, 3)`` uint8 array or LazyFrames
    model : EmbeddingModel or name/path (``"default"``: the shipped model, else the baseline)
    config : :class:`~simwidgets.transfer.TransferConfig` for the session
    device : compute device (automatic when None)
    width : canvas width in pixels
    scribbles, autosave, n_objects, name : passed to the ScribbleWidget
    session : an existing :class:`~simwidgets.session.InteractiveSession` of this video to
        continue (its embeddings, strokes and masks); ``model``, ``config`` and ``device``
        are then ignored

    Attributes
    ----------
    editor : the :class:`~simwidgets.widgets.ScribbleWidget` (its ``canvas`` is ``canvas``)
    session : the :class:`~simwidgets.session.InteractiveSession`
    result : the last PropagationResult (None before the first round)
    busy : traitlet, True while a round runs
    """

    busy = traitlets.Bool(False)

    def __init__(self, video, model="default", config=None, device=None, width: int = 640,
                 scribbles=None, autosave=True, n_objects: int | None = None, name: str | None = None,
                 session: InteractiveSession | None = None, background: bool = True, **kwargs):
        editor_kwargs = {k: v for k, v in {"n_objects": n_objects, "name": name}.items() if v is not None}
        if session is not None:
            if not isinstance(session, InteractiveSession):
                raise BadInputError(f"session must be an InteractiveSession; got {type(session).__name__}")
            shape = tuple(getattr(video, "frames", video).shape[:3])
            if shape != (session.n_frames, session.height, session.width):
                raise BadInputError(f"the session is for a {session.n_frames}-frame {session.width}x{session.height} "
                                    f"video; this video is {shape[0]} frames {shape[2]}x{shape[1]}")
            if scribbles is None and len(session.scribbles):
                scribbles = session.scribbles
        self.editor = ScribbleWidget(video, masks=None if session is None else session.masks, scribbles=scribbles,
                                     width=width, autosave=autosave, **editor_kwargs)
        self.canvas = self.editor.canvas
        if session is None:
            session = InteractiveSession(self.canvas.frames, model=model, config=config, device=device)
            session.name = self.canvas.name
        self.session = session
        ch, cw = self.canvas.canvas_size

        # propagation
        self.propagate_button = widgets.Button(description="Propagate", icon="play", button_style="primary",
                                               tooltip="label every frame from the strokes")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="stop this round; the previous masks stay")
        self.cancel_button.on_click(lambda _: self.cancel())
        #: the Propagate button runs the round in a thread (the kernel and the widget stay
        #: usable, the frame on screen is previewed at once); False: in the click itself
        self.background = bool(background)
        self._cancel = threading.Event()
        #: {frame: the mask it showed before this round} for frames previewed or streamed in
        self._replaced: dict[int, np.ndarray | None] = {}
        self._worker: threading.Thread | None = None
        self.suggest_button = widgets.Button(description="Suggest next frame", icon="lightbulb-o", disabled=True,
                                             tooltip="show the least certain frame without strokes",
                                             layout=widgets.Layout(width="180px"))
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                              layout=widgets.Layout(width="240px", visibility="hidden"))
        self.progress_label = widgets.Label()
        self.propagate_button.on_click(lambda _: self._run_guarded(
            self.start_propagation if self.background else self.propagate))
        self.suggest_button.on_click(lambda _: self._run_guarded(self.suggest))

        # options (TransferConfig fields)
        config = self.session.config
        self.temporal_checkbox = widgets.Checkbox(value=config.temporal, description="temporal", indent=False,
                                                  layout=widgets.Layout(width="90px"))
        self.top_k_slider = widgets.IntSlider(value=config.top_k, min=1, max=64, description="top-k",
                                              style={"description_width": "50px"})
        self.temperature_slider = widgets.FloatLogSlider(value=config.temperature, base=10, min=-3, max=0, step=0.1,
                                                         description="temperature", readout_format=".3f",
                                                         style={"description_width": "80px"})
        window = config.for_stride(self.session.transfer.stride).window
        self.window_slider = widgets.IntSlider(value=window, min=1, max=40, description="window",
                                               style={"description_width": "50px"})
        self.options = widgets.Accordion(children=[widgets.HBox([
            self.temporal_checkbox, self.top_k_slider, self.temperature_slider, self.window_slider],
            layout=widgets.Layout(flex_flow="row wrap"))])
        self.options.set_title(0, "propagation options")
        self.options.selected_index = None

        # confidence strip
        self.strip = Canvas(width=cw, height=STRIP_HEIGHT, layout=widgets.Layout(width=f"{cw}px"))
        self.strip.add_class("simwidgets-confidence-strip")
        self.strip.on_mouse_down(self.handle_strip_click)
        self.strip.on_client_ready(self._draw_strip)
        self.strip_image = np.zeros((STRIP_HEIGHT, cw, 3), np.uint8)

        # export (one path, one format) and import of reference masks
        stem = self.canvas.name or "video"
        self.export_format = widgets.Dropdown(options=list(EXPORT_FORMATS), value="PNG masks", description="export",
                                              style={"description_width": "50px"}, layout=widgets.Layout(width="190px"))
        self.export_path = widgets.Text(value=f"{stem}_masks", description="to", style={"description_width": "20px"},
                                        layout=widgets.Layout(width="280px"))
        self.export_button = widgets.Button(description="Export", icon="download", disabled=True)
        self.export_format.observe(self._on_export_format, names="value")
        self.export_button.on_click(
            lambda _: self._run_guarded(lambda: self.export(self.export_path.value, self.export_format.value)))
        self.import_path = widgets.Text(value="", placeholder="folder of masks named by frame number",
                                        description="masks from", style={"description_width": "75px"},
                                        layout=widgets.Layout(width="380px"))
        self.import_button = widgets.Button(description="Use as references", icon="upload")
        self.import_button.on_click(lambda _: self._run_guarded(lambda: self.import_masks(self.import_path.value)))

        self.status = widgets.HTML("<small>Paint strokes (object 1, background 0…), then press Propagate.</small>")
        self.canvas.observe(lambda _: self._draw_strip(), names=["frame_idx", "annotated_frames"])

        run = widgets.HBox([self.propagate_button, self.cancel_button, self.progress, self.progress_label,
                            self.suggest_button],
                           layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        export = widgets.HBox([self.export_format, self.export_path, self.export_button, self.import_path,
                               self.import_button], layout=widgets.Layout(flex_flow="row wrap"))
        strip_help = widgets.HTML("<small>confidence per frame (taller/redder = less sure; orange = has strokes; "
                                  "click to show a frame)</small>")
        super().__init__(children=[self.editor, self.strip, strip_help, run, self.options, export, self.status],
                         **kwargs)
        self.add_class("simwidgets-segmentation-app")
        self._set_busy(False)
        self._draw_strip()

    # ------------------------------------------------------------------ state
    @property
    def result(self):
        return self.session.result

    @property
    def masks(self) -> np.ndarray | None:
        """``(T, H, W)`` uint8 masks of the last round (None before the first)."""
        return self.session.masks

    @property
    def frame_idx(self) -> int:
        return self.canvas.frame_idx

    @frame_idx.setter
    def frame_idx(self, value: int) -> None:
        self.canvas.frame_idx = value

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        has_result = self.session.result is not None
        self.propagate_button.disabled = busy
        self.cancel_button.disabled = not busy
        self.suggest_button.disabled = busy or not has_result
        self.export_button.disabled = busy or not has_result
        self.import_button.disabled = busy

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.status.value = f"<small style='color:{colour}'>{text}</small>"

    def _run_guarded(self, action):
        """Run a button's action; any error goes to the status line, never half-done state."""
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - shown to the person, the widget stays usable
            if not getattr(error, "_shown_in_status", False):
                self._say(f"{type(error).__name__}: {html.escape(str(error))}", error=True)
            return None

    # ------------------------------------------------------------------ actions
    def _options(self) -> dict:
        return {
            "temporal": bool(self.temporal_checkbox.value),
            "top_k": int(self.top_k_slider.value),
            "temperature": float(self.temperature_slider.value),
            "window": int(self.window_slider.value),
        }

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise RoundCancelled("cancelled")
        self.progress.description = stage
        self.progress.value = done / max(total, 1)
        self.progress_label.value = f"{stage} {done}/{total}"

    def _begin_round(self) -> None:
        """Check there is something to propagate and hand the strokes to the session."""
        if self.busy:
            raise BadInputError("a propagation is already running")
        strokes = self.canvas.scribbles
        if len(strokes) == 0 and not self.session.annotated_frames:
            raise BadInputError("no strokes yet: paint at least one object (and ideally background) first")
        self._cancel.clear()
        self._set_busy(True)
        self.progress.layout.visibility = "visible"
        self.progress.value = 0.0
        self._say("working…")
        try:
            self.session.configure(**self._options())
            self.session.set_scribbles(strokes)
        except Exception:
            self._end_round()
            raise

    def _run_round(self):
        """The round itself; the previous masks and result stay on any failure."""
        try:
            result = self.session.propagate(callback=self._on_progress, on_frame=self._on_frame)
            self.canvas.set_masks(result.masks)
            self._replaced = {}
            self._draw_strip()
            record = self.session.history[-1]
            embedded = f" (embedding {record.embed_seconds:.1f} s)" if record.n_embedded else ""
            self._say(
                f"round {record.round}: {self.session.n_frames} frames in {record.seconds:.1f} s{embedded}; "
                f"{len(record.changed_frames)} frames changed; least sure unannotated frame: "
                f"{self.session.suggest_frame()}"
            )
            return result
        except RoundCancelled:
            self._restore_masks()
            self._say("cancelled: the previous masks stay; the strokes count for the next round")
            return None
        except Exception as error:
            self._restore_masks()
            self._say(f"propagation failed, the previous masks stay: {type(error).__name__}: "
                      f"{html.escape(str(error))}", error=True)
            error._shown_in_status = True
            raise
        finally:  # observers of ``busy`` see the finished state
            self._end_round()

    def _end_round(self) -> None:
        self.progress.layout.visibility = "hidden"
        self.progress_label.value = ""
        self._set_busy(False)

    def _on_frame(self, frame_idx: int, mask: np.ndarray) -> None:
        """A frame's final mask, streamed in while the round runs: shown at once."""
        self._replaced.setdefault(frame_idx, self.canvas.masks[frame_idx])
        self.canvas.set_mask(frame_idx, mask)

    def _restore_masks(self) -> None:
        """Take back a preview and the masks streamed in: the overlay shows the last
        finished round again."""
        replaced, self._replaced = self._replaced, {}
        for frame_idx, mask in replaced.items():
            self.canvas.set_mask(frame_idx, mask)

    def propagate(self):
        """One round, in the calling thread: the canvas's strokes -> masks on every frame
        (shown as the overlay).  Returns the PropagationResult (None if cancelled).  On
        error the previous masks and result stay, the buttons come back, and the error is
        raised (the button shows it instead)."""
        self._begin_round()
        return self._run_round()

    def start_propagation(self) -> threading.Thread:
        """One round in a background thread (what the Propagate button does).

        The frame on screen gets a preview mask at once (its votes from the strokes
        alone, :meth:`InteractiveSession.preview`); the whole round then runs while the
        kernel and the widget stay usable (browse frames, draw the next strokes); its
        masks replace the preview when it ends.  :meth:`cancel` stops it at the next
        frame, leaving the session as it was.  Returns the thread (``join()`` waits).
        """
        self._begin_round()
        try:
            frame_idx = self.canvas.frame_idx
            before = self.canvas.masks[frame_idx]
            preview = self.session.preview(frame_idx)
            self._replaced = {frame_idx: before}
            self.canvas.set_mask(frame_idx, preview)
            self._say(f"frame {frame_idx} previewed from the strokes alone; the other frames stream in as "
                      "they are propagated…")
        except Exception:
            self._end_round()
            raise
        self._worker = threading.Thread(target=self._run_guarded, args=(self._run_round,), daemon=True,
                                        name="simwidgets-propagation")
        self._worker.start()
        return self._worker

    def cancel(self) -> None:
        """Stop a running round at its next frame; the session stays as before the round."""
        if self.busy:
            self._cancel.set()
            self._say("cancelling…")

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background round to end."""
        if self._worker is not None:
            self._worker.join(timeout)

    def suggest(self) -> int:
        """Show the least certain frame without strokes; returns its index."""
        if self.session.result is None:
            raise BadInputError("propagate first: suggestions come from the propagation's confidence")
        self.session.set_scribbles(self.canvas.scribbles)  # frames annotated since the last round count
        frame_idx = self.session.suggest_frame()
        self.canvas.frame_idx = frame_idx
        entropy = float(self.session.result.entropy[frame_idx])
        self._say(f"suggested frame {frame_idx}: the least certain without strokes (entropy {entropy:.3f}); "
                  "correct it and press Propagate")
        return frame_idx

    def _result_masks(self) -> np.ndarray:
        if self.session.result is None:
            raise BadInputError("nothing to export yet: press Propagate first")
        return self.session.result.masks

    def _on_export_format(self, change) -> None:
        """Suggest a path of the chosen format (a folder for PNGs, a file otherwise)."""
        stem = self.canvas.name or "video"
        self.export_path.value = f"{stem}{EXPORT_FORMATS[change['new']]}"

    def export(self, path, fmt: str = "PNG masks"):
        """Write the last masks in one of :data:`EXPORT_FORMATS` (what the Export button does)."""
        writers = {"PNG masks": self.export_masks, "COCO RLE": self.export_coco, "MP4 overlay": self.export_video,
                   "GIF overlay": self.export_animation}
        if fmt not in writers:
            raise BadInputError(f"unknown export format {fmt!r} (choose from: {', '.join(writers)})")
        return writers[fmt](path)

    def export_masks(self, folder) -> list[Path]:
        """Write the last masks as DAVIS palette PNGs ``folder/%05d.png``."""
        paths = write_masks(self._result_masks(), folder)
        self._say(f"wrote {len(paths)} masks to <code>{html.escape(str(folder))}</code>")
        return paths

    def export_coco(self, path) -> Path:
        """Write the last masks as COCO run-length JSON (one annotation per object and frame)."""
        written = write_coco(self._result_masks(), path, video=self.canvas.name or "video")
        self._say(f"wrote COCO run-length masks to <code>{html.escape(str(written))}</code>")
        return written

    def export_animation(self, path, fps: float = 10.0, width: int | None = 480) -> Path:
        """Write the overlay of the last masks as an animated GIF."""
        written = overlay_animation(self.canvas.frames, self._result_masks(), path, fps=fps, width=width,
                                    opacity=max(self.canvas.opacity, 0.3))
        self._say(f"wrote the overlay animation to <code>{html.escape(str(written))}</code>")
        return written

    def export_video(self, path, fps: float = 24.0, width: int | None = None) -> Path:
        """Write the overlay of the last masks as an H.264 MP4."""
        written = overlay_video(self.canvas.frames, self._result_masks(), path, fps=fps, width=width,
                                opacity=max(self.canvas.opacity, 0.3))
        self._say(f"wrote the overlay video to <code>{html.escape(str(written))}</code>")
        return written

    def import_masks(self, folder) -> list[int]:
        """Use a folder of masks named by frame number (``00040.png`` is frame 40) as
        references for the next Propagate, beside the strokes; returns their frames."""
        masks = read_mask_folder(folder, n_frames=self.session.n_frames,
                                 size=(self.session.height, self.session.width))
        for frame_idx, mask in masks.items():
            self.session.add_mask(frame_idx, mask)
        frames = sorted(masks)
        self._say(f"{len(frames)} reference mask(s) from <code>{html.escape(str(folder))}</code> "
                  f"(frames {', '.join(map(str, frames[:8]))}{'...' if len(frames) > 8 else ''}); press Propagate")
        return frames

    # ------------------------------------------------------------------ strip
    def strip_frame_at(self, x: float) -> int:
        """The frame under strip column ``x`` (canvas pixels)."""
        n, width = self.session.n_frames, self.strip.width
        return int(np.clip(int(x * n / width), 0, n - 1))

    def handle_strip_click(self, x: float, y: float) -> None:
        """Show the frame under a click on the confidence strip."""
        self.canvas.frame_idx = self.strip_frame_at(x)

    def _draw_strip(self) -> None:
        n, width = self.session.n_frames, self.strip.width
        image = np.full((STRIP_HEIGHT, width, 3), 235, np.uint8)
        column_frames = np.minimum((np.arange(width) * n) // width, n - 1)
        result = self.session.result
        usable = STRIP_HEIGHT - _MARK
        if result is not None:
            entropy = np.asarray(result.entropy, dtype=np.float64)
            # an absolute scale (entropy 0.2 and above is "unsure"), stretched only when a
            # frame is less sure than that: colours compare across rounds
            scale = max(float(entropy.max()), 0.2)
            for frame_idx in range(n):
                columns = column_frames == frame_idx
                level = entropy[frame_idx] / scale
                height = max(2, int(round(level * usable)))
                image[STRIP_HEIGHT - height:, columns] = _strip_colour(level)
        annotated = np.isin(column_frames, self.canvas.annotated_frames)
        image[:_MARK, annotated] = (230, 85, 13)
        current = np.flatnonzero(column_frames == self.canvas.frame_idx)
        if len(current) == 0:  # more frames than columns: the nearest column
            current = np.array([min(width - 1, self.canvas.frame_idx * width // n)])
        image[:, current[[0, -1]]] = 0
        self.strip_image = image
        with hold_canvas():
            self.strip.put_image_data(image, 0, 0)

    def __repr__(self) -> str:
        return (f"SegmentationApp({self.canvas.name!r}, {self.session.n_frames} frames, frame_idx={self.frame_idx}, "
                f"{self.canvas.n_strokes} strokes, {self.session.n_rounds} rounds)")
