"""Never lose annotations: a JSON file beside the notebook that follows every finished stroke.

The widget writes its whole :class:`~simwidgets.scribbles.Scribbles` in the DAVIS format
after each change, atomically (temporary file + rename), so a kernel restart or a crash
loses at most the stroke in progress.  A new widget on the same video (same frame count,
found through the same file name) reads the file back.

A file that cannot be read (corrupt JSON, a truncated copy, scribbles of another video)
is never overwritten: it is renamed with a ``.corrupt-<time>`` or ``.other-<time>``
suffix and an :class:`AutosaveWarning` says where it went.
"""
from __future__ import annotations

import hashlib
import re
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..scribbles import Scribbles

__all__ = ["Autosave", "AutosaveWarning", "default_autosave_path", "video_name"]

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


class Autosave:
    """The autosave file of one widget.

    Parameters
    ----------
    path : where to write; ``None`` disables autosaving (and restoring)
    """

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
        warnings.warn(
            f"autosave file {self.path} was not restored because {reason}; "
            f"it was moved to {target} and a new autosave starts",
            AutosaveWarning,
            stacklevel=3,
        )
        return target

    def save(self, scribbles: Scribbles) -> bool:
        """Write ``scribbles`` atomically; on an OS error warn and return False (the state stays in memory)."""
        if self.path is None:
            return False
        try:
            scribbles.save(self.path)
        except OSError as error:
            self.last_error = str(error)
            warnings.warn(
                f"could not autosave scribbles to {self.path}: {error}; they are only in memory now "
                "(save them with widget.scribbles.save(path))",
                AutosaveWarning,
                stacklevel=3,
            )
            return False
        self.last_error = None
        return True
