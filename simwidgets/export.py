"""Export: masks and overlays in the formats other tools read.

One writer per format, shared by the command line and the app:

* DAVIS palette PNGs (:func:`write_masks`): what the DAVIS tools and most VOS code read;
* COCO run-length JSON (:func:`write_coco`): one annotation per object and frame, read
  back by ``pycocotools`` (and :func:`read_coco`) -- what detection and annotation tools
  exchange;
* an overlay to show a result: an animated GIF (:func:`overlay_animation`) or an H.264
  MP4 (:func:`overlay_video`, through PyAV's FFmpeg), which plays everywhere and stays
  small for long videos.

Output paths are checked before anything is written (:mod:`simwidgets.checks`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .checks import output_file, output_folder, positive_float
from .errors import BadInputError
from .palette import save_indexed_png
from .viz import overlay

__all__ = ["write_masks", "write_coco", "read_coco", "overlay_animation", "overlay_video"]


def write_masks(masks, folder: str | Path) -> list[Path]:
    """Write ``(T, H, W)`` object ids as DAVIS palette PNGs ``folder/00000.png ...``.

    The one mask writer of the CLI and the app: the folder is created; an existing file
    in its place (or above it) is an error that names it, not a traceback.  Returns the
    paths written.
    """
    masks = np.asarray(masks) if not hasattr(masks, "shape") else masks
    if len(masks.shape) != 3:
        raise BadInputError(f"masks must be (T, H, W) object ids; got shape {tuple(masks.shape)}")
    folder = output_folder(folder, "mask folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(f"cannot create the mask folder {folder} ({error.strerror or error})") from None
    paths = []
    for frame_idx, mask in enumerate(masks):
        path = folder / f"{frame_idx:05d}.png"
        save_indexed_png(mask, path)
        paths.append(path)
    return paths


def overlay_animation(frames, masks, path, fps: float = 10.0, width: int | None = 480, opacity: float = 0.5) -> Path:
    """An animated GIF of the masks blended over the frames (DAVIS colours).

    Parameters
    ----------
    frames : ``(T, H, W, 3)`` uint8 (array or LazyFrames)
    masks : ``(T, H, W)`` object ids
    path : output file (``.gif``)
    fps : frames per second
    width : width of the animation in pixels (height follows); None keeps the video's
    opacity : of the object colours
    """
    path = _overlay_path(frames, masks, path, fps, ".gif", "animation")
    images = [Image.fromarray(image) for image in _overlay_frames(frames, masks, width, opacity)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def _overlay_path(frames, masks, path, fps, suffix: str, what: str) -> Path:
    if len(frames) != len(masks):
        raise BadInputError(f"{len(frames)} frames but {len(masks)} masks")
    positive_float(fps, "fps")
    path = output_file(path, what)
    if path.suffix.lower() != suffix:
        raise BadInputError(f"the {what} is written as {suffix[1:].upper()}: give a {suffix} path; got {path.name}")
    return path


def _overlay_frames(frames, masks, width: int | None, opacity: float, multiple: int = 1):
    """RGB overlays of every frame, resized to ``width`` (height follows), both sides
    rounded to ``multiple`` (H.264 in yuv420p needs even sides)."""
    for frame_idx in range(len(masks)):
        image = Image.fromarray(overlay(np.asarray(frames[frame_idx]), np.asarray(masks[frame_idx]), opacity))
        w = image.width if width is None else int(width)
        h = max(1, round(image.height * w / image.width))
        w, h = max(multiple, w - w % multiple), max(multiple, h - h % multiple)
        if (w, h) != image.size:
            image = image.resize((w, h), Image.BILINEAR)
        yield np.asarray(image)


def overlay_video(frames, masks, path, fps: float = 24.0, width: int | None = None, opacity: float = 0.5) -> Path:
    """An H.264 MP4 of the masks blended over the frames (DAVIS colours), via PyAV.

    Same parameters as :func:`overlay_animation` (``width`` None keeps the video's size);
    ``path`` ends in ``.mp4``.  Sides are rounded down to even numbers (yuv420p, what
    every player reads).
    """
    import av

    masks = np.asarray(masks)
    path = _overlay_path(frames, masks, path, fps, ".mp4", "video")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = None
        for image in _overlay_frames(frames, masks, width, opacity, multiple=2):
            if stream is None:
                stream = container.add_stream("libx264", rate=round(fps))
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_coco(masks, path, object_ids=None, frame_names=None, video: str = "video") -> Path:
    """Masks as COCO run-length JSON: one annotation per object and frame where it appears.

    The file is a COCO dataset (``images``: one per frame with ``file_name`` and size;
    ``categories``: one per object id; ``annotations``: ``segmentation`` an RLE dict
    ``{"size": [H, W], "counts": str}`` as ``pycocotools.mask.encode`` makes it, with
    ``area``, ``bbox``, ``image_id`` = frame index, ``category_id`` = object id), so
    ``pycocotools.coco.COCO(path)`` reads it.

    Parameters
    ----------
    masks : ``(T, H, W)`` object ids
    object_ids : ids to write (default: every id > 0 that appears)
    frame_names : file name of each frame (default ``00000.jpg`` ...)
    video : the name recorded in ``info``
    """
    import json

    from pycocotools import mask as rle

    masks = np.asarray(masks)
    if masks.ndim != 3 or not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
        raise BadInputError(f"masks must be (T, H, W) integer object ids; got shape {masks.shape}, dtype {masks.dtype}")
    path = output_file(path, "COCO file")
    n, h, w = masks.shape
    ids = sorted(int(i) for i in np.unique(masks) if i > 0) if object_ids is None else [int(i) for i in object_ids]
    names = [f"{t:05d}.jpg" for t in range(n)] if frame_names is None else [str(x) for x in frame_names]
    if len(names) != n:
        raise BadInputError(f"{len(names)} frame names for {n} frames")
    annotations = []
    for t in range(n):
        for object_id in ids:
            binary = np.asfortranarray(masks[t] == object_id, dtype=np.uint8)
            if not binary.any():
                continue
            encoded = rle.encode(binary)
            annotations.append({
                "id": len(annotations) + 1, "image_id": t, "category_id": object_id, "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": encoded["counts"].decode("ascii")},
                "area": float(rle.area(encoded)), "bbox": [float(v) for v in rle.toBbox(encoded)],
            })
    data = {
        "info": {"description": f"simwidgets masks of {video}", "video": video},
        "images": [{"id": t, "file_name": names[t], "height": h, "width": w, "frame_index": t} for t in range(n)],
        "categories": [{"id": i, "name": f"object {i}"} for i in ids],
        "annotations": annotations,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def read_coco(path) -> np.ndarray:
    """``(T, H, W)`` uint8 object ids from a file of :func:`write_coco` (a COCO dataset
    whose ``image_id`` is the frame index and ``category_id`` the object id)."""
    import json

    from pycocotools import mask as rle

    try:
        data = json.loads(Path(path).read_text())
        images = sorted(data["images"], key=lambda image: image["id"])
        h, w = images[0]["height"], images[0]["width"]
        masks = np.zeros((len(images), h, w), dtype=np.uint8)
        for annotation in data["annotations"]:
            segmentation = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode())
            masks[annotation["image_id"]][rle.decode(segmentation).astype(bool)] = annotation["category_id"]
    except FileNotFoundError:
        raise BadInputError(f"COCO file not found: {path}") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise BadInputError(f"cannot read {path} as simwidgets COCO masks ({type(error).__name__}: {error})") from None
    return masks
