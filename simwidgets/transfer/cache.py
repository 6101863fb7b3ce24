"""Embeddings of one video, computed once per frame and kept for every later round.

Embedding is the expensive step (seconds per 480p frame for a network on a CPU); a
correction round only redoes the votes, so the embeddings are kept, in float16 (half the
memory; similarities are accumulated in float32).  A frame's embedding never changes once
stored: the candidates kept across rounds (:mod:`.reuse`) rely on it.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import checks
from ..device import embedding_batch_size, pick_device
from ..errors import BadInputError
from ..models import EmbeddingModel
from ..models.compiled import compile_policy

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """Embeddings of one video, computed once per frame and kept (float16) for reuse.

    Parameters
    ----------
    model : the :class:`~simwidgets.models.EmbeddingModel` that embeds the frames
    frames : uint8 ``(T, H, W, 3)`` array-like (LazyFrames works) or a list of frames
    device : compute device (automatic when None); the store lives there on CUDA, else on CPU
    batch_size : frames embedded per call of the model (None:
        :func:`~simwidgets.device.embedding_batch_size`, one on a CPU)
    mirror : embed each frame together with its mirror image (``model.embed(mirror=True)``);
        fixed for the cache's life, like every stored embedding
    compile : run the network compiled for this CPU (``cached``: when a package is on disk,
        ``build``: build it when missing, ``off``; None: ``$SIMWIDGETS_COMPILE``, else
        ``cached``; see :mod:`simwidgets.models.compiled`); the embeddings are the same

    ``n_computed`` counts frames actually embedded by the model, so reuse can be checked.
    """

    def __init__(self, model: EmbeddingModel, frames, device=None, batch_size: int | None = None, dtype=torch.float16,
                 mirror: bool = False, compile: str | bool | None = None):
        frames = checks.video_frames(frames)
        self.model = model
        self.mirror = checks.boolean(mirror, "mirror")
        self.compile = compile_policy(compile)
        self.frames = frames
        self.device = pick_device(device)
        self.batch_size = (embedding_batch_size(self.device) if batch_size is None
                           else checks.positive_int(batch_size, "batch_size"))
        self.n_frames, self.height, self.width = tuple(frames.shape[:3])
        self.grid = model.grid_size(self.height, self.width)
        self.storage_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        self._store = torch.empty((self.n_frames, model.dim) + self.grid, dtype=dtype, device=self.storage_device)
        self._done = np.zeros(self.n_frames, dtype=bool)
        self.n_computed = 0

    # ------------------------------------------------------------------ queries
    @property
    def embedded_frames(self) -> list[int]:
        """Indices of the frames whose embedding is stored, in order."""
        return np.flatnonzero(self._done).tolist()

    def is_embedded(self, frame_idx: int) -> bool:
        """Whether one frame's embedding is stored (reading it will not run the model)."""
        return bool(self._done[checks.frame_index(frame_idx, self.n_frames)])

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(D, h, w)`` of one frame's embedding."""
        return (self.model.dim,) + tuple(self.grid)

    @property
    def nbytes(self) -> int:
        """Bytes of the store (allocated for every frame up front)."""
        return self._store.numel() * self._store.element_size()

    # ------------------------------------------------------------------ filling
    def ensure(self, frame_indices=None, progress: bool = False) -> None:
        """Embed the frames not yet cached (all frames when ``frame_indices`` is None)."""
        wanted = range(self.n_frames) if frame_indices is None else frame_indices
        missing = [i for i in (checks.frame_index(f, self.n_frames) for f in wanted) if not self._done[i]]
        if not missing:
            return
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(missing), desc="embedding frames", unit="frame")
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            chunk = np.stack([np.asarray(self.frames[i]) for i in batch])
            emb = self.model.embed(chunk, device=self.device, batch_size=self.batch_size, mirror=self.mirror,
                                   compile=self.compile)
            self._store[batch] = emb.to(self.storage_device, self._store.dtype)
            self._done[batch] = True
            self.n_computed += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()

    def put(self, frame_idx: int, embedding: torch.Tensor) -> None:
        """Store a precomputed ``(D, h, w)`` embedding of a frame not yet embedded.

        For embeddings computed elsewhere (another process, or frames known to repeat);
        they do not count in ``n_computed``.  A frame already stored is refused rather than
        overwritten, since candidates kept from its old embedding would no longer match.
        """
        frame_idx = checks.frame_index(frame_idx, self.n_frames)
        if self._done[frame_idx]:
            raise BadInputError(f"frame {frame_idx} is already embedded; a stored embedding never changes")
        if not isinstance(embedding, torch.Tensor):
            raise BadInputError(f"an embedding must be a torch.Tensor; got {type(embedding).__name__}")
        if tuple(embedding.shape) != self.embedding_shape:
            raise BadInputError(
                f"embedding of frame {frame_idx} has shape {tuple(embedding.shape)}; expected {self.embedding_shape}"
            )
        self._store[frame_idx] = embedding.to(self.storage_device, self._store.dtype)
        self._done[frame_idx] = True

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        """``(D, h, w)`` float32 embedding of one frame on the compute device."""
        self.ensure([frame_idx])
        return self._store[frame_idx].to(self.device, torch.float32)
