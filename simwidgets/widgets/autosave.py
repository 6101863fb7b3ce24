"""Never lose annotations: a JSON file beside the notebook that follows every finished stroke.

The widget writes its whole :class:`~simwidgets.scribbles.Scribbles` in the DAVIS format
after each change, atomically (temporary file + rename), so a kernel restart or a crash
loses at most the stroke in progress.  A new widget on the same video (same frame count,
found through the same file name) reads the file back.

A file that cannot be read (corrupt JSON, a truncated copy, scribbles of another video)
is never overwritten: it is renamed with a ``.corrupt-<time>`` or ``.other-<time>``
suffix and an :class:`AutosaveWarning` says where it went.

Several widgets on one video (a ScribbleWidget and a SegmentationApp, which holds one;
the same notebook in two kernels) share the default file name.  None of them ever
overwrites strokes it has not seen: a widget writes the file only while it still holds
what this widget last read or wrote there (or while there is none).  The first widget
whose save finds someone else's strokes in it leaves that file alone, moves its own
autosave to a free sibling (``bear-2.scribbles.json``, ``bear-3...``), writes all its
strokes there and says so with an :class:`AutosaveWarning` naming both files.  So a
newer widget on the same video continues the file (after a kernel restart, or when a
cell is run again), and an older one that is still used afterwards moves out of its
way.  Only the file named after the video is restored by a new widget; load a sibling
with ``widget.set_scribbles(path)``.  Two processes saving within the same millisecond
can still race (the check and the rename are two steps); the loser's strokes stay in
its memory and move to a sibling with its next save.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..scribbles import Scribbles, atomic_write_text

__all__ = ["Autosave", "AutosaveWarning", "default_autosave_path", "sibling_path", "video_name"]

SUFFIX = ".scribbles.json"


class AutosaveWarning(UserWarning):
    """Something happened to an autosave file that the user should know about."""


def video_name(frames, name: str | None = None) -> str:
    """A stable name for a video: ``name`` if given, else ``video-<hash>`` of its first frame.

    The hash makes the default autosave path of an unnamed frames array the same every
    time the same video is shown, so its scribbles come back after a kernel restart.
    """
    if name:
        return str(name)
    first = np.ascontiguousarray(frames[0])
    digest = hashlib.sha1()
    digest.update(repr((len(frames),) + tuple(first.shape)).encode())
    digest.update(first.tobytes())
    return f"video-{digest.hexdigest()[:10]}"


def default_autosave_path(name: str, folder: str | Path | None = None) -> Path:
    """``<folder>/<name>.scribbles.json``; the folder defaults to the current one (the notebook's)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "video"
    return Path(folder if folder is not None else Path.cwd()) / f"{safe}{SUFFIX}"


def sibling_path(path: Path, number: int) -> Path:
    """``bear.scribbles.json`` -> ``bear-2.scribbles.json`` (``toy.json`` -> ``toy-2.json``)."""
    name = path.name
    ext = SUFFIX if name.endswith(SUFFIX) and name != SUFFIX else path.suffix
    return path.with_name(f"{name[:len(name) - len(ext)]}-{number}{ext}")


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class Autosave:
    """The autosave file of one widget.

    Parameters
    ----------
    path : where to write; ``None`` disables autosaving (and restoring)
    """

    #: what the file holds, as far as this widget knows: the digest of what it last read
    #: or wrote there, ``None`` when there was no file
    _known: str | None = None

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        if self.path is not None and self.path.is_dir():
            raise BadInputError(f"autosave path {self.path} is a folder; give a file name such as bear{SUFFIX}")
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def restore(self, n_frames: int) -> Scribbles | None:
        """Scribbles saved for a video of ``n_frames`` frames, or ``None`` if there are none.

        A corrupt file, or one written for a video with another frame count, is moved aside
        with a warning and ``None`` is returned.
        """
        self._known = self._on_disk()
        if self.path is None or not self.path.exists():
            return None
        try:
            scribbles = Scribbles.load(self.path)
        except BadInputError as error:
            self.move_aside("corrupt", f"it cannot be read ({error})")
            return None
        if scribbles.n_frames != n_frames:
            self.move_aside(
                "other",
                f"it holds scribbles for {scribbles.n_frames} frames and this video has {n_frames}",
            )
            return None
        return scribbles

    def move_aside(self, tag: str, reason: str) -> Path | None:
        """Rename the file to ``<name>.<tag>-<time>`` (never over an existing file) and warn."""
        if self.path is None or not self.path.exists():
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.{tag}-{stamp}")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.{tag}-{stamp}-{counter}")
            counter += 1
        self.path.rename(target)
        self._known = None
        warnings.warn(
            f"autosave file {self.path} was not restored because {reason}; "
            f"it was moved to {target} and a new autosave starts",
            AutosaveWarning,
            stacklevel=3,
        )
        return target

    def save(self, scribbles: Scribbles) -> bool:
        """Write ``scribbles`` atomically; on an OS error warn and return False (the state stays in memory).

        If the file no longer holds what this widget last read or wrote there, another
        widget or program has saved strokes in it: they are left alone and this widget
        moves to a sibling file first (see the module docstring).
        """
        if self.path is None:
            return False
        text = scribbles.to_json()
        try:
            if self._on_disk() != self._known:
                self._move_to_sibling()
            atomic_write_text(self.path, text)
        except OSError as error:
            self.last_error = str(error)
            warnings.warn(
                f"could not autosave scribbles to {self.path}: {error}; they are only in memory now "
                "(save them with widget.scribbles.save(path))",
                AutosaveWarning,
                stacklevel=3,
            )
            return False
        self._known = _digest(text.encode("utf-8"))
        self.last_error = None
        return True

    def _on_disk(self) -> str | None:
        """Digest of the file's bytes; None if there is no file; ``"unreadable"`` if it cannot be read."""
        try:
            return _digest(self.path.read_bytes()) if self.path is not None else None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return "unreadable"  # not ours to replace: someone else's file, or a folder

    def _move_to_sibling(self) -> None:
        """Leave the shared file to whoever wrote it; continue in the first free sibling."""
        shared, number = self.path, 2
        while os.path.lexists(sibling_path(shared, number)):
            number += 1
        self.path, self._known = sibling_path(shared, number), None
        warnings.warn(
            f"autosave file {shared} was changed by another widget or program since this widget "
            f"last saved it (two widgets on the same video?); it is left as it is, and this "
            f"widget's strokes now autosave to {self.path}",
            AutosaveWarning,
            stacklevel=4,
        )
