"""How far a correction's own references reach in time (``correction_reach``).

A correction stroke on frame ``c`` is a few cells of a missed region.  As global
references they are matched in every frame, and the learned embedding has no notion of
time: on the DAVIS protocol a correction on one frame of mallard-water or scooter-gray
turned look-alike cells of far frames to the stroke's label and lowered the video.  The
hand-crafted baseline did not do this, since its position channels kept a stroke local.

Here a correction frame's references carry their frame: in frame ``t`` each of them
counts as less alike by ``temperature * |t - c| / reach``, i.e. its vote weight
``exp(s / T)`` is multiplied by ``exp(-|t - c| / reach)``.  At ``c`` itself nothing
changes; ``reach`` frames away a correction reference weighs ``1/e`` of an equally similar
earlier reference, and three reaches away 5 %.  References of the frames annotated before
any result was shown (the first scribbles) and of the user's masks are not faded: they
were drawn on blank frames or checked whole.  The correction still travels through the
temporal sweeps (its frame is clamped, and each frame's context is the frames before it
in the sweep), which is how it reaches frames that really look like it.

The fade is applied to the frame's kept global candidates (the ``k`` most similar
references, :mod:`.reuse`): their scores are lowered and the list sorted again, so a faded
reference may lose its place in the vote to a context cell.
:func:`~.knn.vote_frame_reference` with ``global_offsets`` computes the same thing the plain
way (whole score matrices); tests compare the two.
"""
from __future__ import annotations

import torch

from .references import References

__all__ = ["ReferenceFade", "rerank"]


class ReferenceFade:
    """The per-frame score offsets of a reference table's correction rows.

    Parameters
    ----------
    refs : the :class:`~.references.References` (its ``blocks`` name each row's frame)
    correction_frames : the annotated frames whose references fade with time
    reach : frames over which their weight falls by ``1/e``
    temperature : the vote's softmax temperature (an offset ``T * log w`` multiplies a
        vote weight by ``w``)
    """

    def __init__(self, refs: References, correction_frames, reach: float, temperature: float):
        frames = [key.frame for key in refs.blocks for _ in range(key.size)]
        self.row_frames = torch.tensor(frames, dtype=torch.float32)
        corrections = {int(f) for f in correction_frames}
        self.faded = torch.tensor([f in corrections for f in frames], dtype=torch.bool)
        self.scale = float(temperature) / float(reach)

    @classmethod
    def of(cls, refs: References, correction_frames, reach, temperature) -> "ReferenceFade | None":
        """The fade of ``refs``, or None where nothing fades (no reach, no correction rows)."""
        if reach is None or not correction_frames or not refs.blocks:
            return None
        fade = cls(refs, correction_frames, reach, temperature)
        return fade if bool(fade.faded.any()) else None

    def offsets(self, frame_idx: int, device=None) -> torch.Tensor:
        """``(R,)`` score offsets (0 or negative) of every row in frame ``frame_idx``."""
        distance = (self.row_frames - float(frame_idx)).abs()
        return torch.where(self.faded, -self.scale * distance, torch.zeros_like(distance)).to(device)


def rerank(values: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor):
    """Candidates ``(values (N, k), index (N, k))`` with ``offsets[index]`` added to their
    scores, sorted descending again (new tensors; kept candidates stay as they were)."""
    shifted = values + offsets[index.long()]
    shifted, order = shifted.sort(dim=1, descending=True)
    return shifted, torch.gather(index, 1, order)
