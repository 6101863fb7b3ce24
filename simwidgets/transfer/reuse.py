"""Candidates kept across rounds, so a correction round redoes only what it changes.

The nearest-neighbour matches do not depend on any label: a frame's local candidates (its
nearest context cells) depend only on the embeddings of the frame and of its context
frames, and its global candidates only on the reference cells' embeddings.  A correction
round (new scribbles on another frame) therefore reuses most of them; it re-matches only
the references that are new and redoes the votes.

Both kinds live in a :class:`CandidatePool`: fixed-size slots of two tensors, allocated
once when the first entry arrives (their pages become resident only as slots fill).
Thousands of separate few-MB tensors, interleaved with the kernels' temporaries,
fragment the heap and double the resident memory of long videos; one allocation does not.

The pool belongs to one :class:`~simwidgets.transfer.LabelTransfer` (one video, one
embedding cache), so keys need not name the cache; each key kind is a frozen dataclass
with named fields:

* :class:`LocalKey` -- the frame, its context frames and the options that shape the match;
  evicted least recently used, since a round touches every frame once and the budget keeps
  the most recent ones;
* :class:`GlobalKey` -- the frame; the entry also records what it was matched against
  (:class:`GlobalOrigin`).  Filled in order and never evicted: the sweeps visit frames in
  the same order every round, where least-recently-used eviction would throw out every
  frame just before it is needed again.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, NamedTuple

import torch

from .references import BlockKey, References

__all__ = ["LocalKey", "GlobalKey", "GlobalOrigin", "Kept", "CandidatePool", "kept_rows"]


@dataclass(frozen=True)
class LocalKey:
    """A frame's local match: the context frames (in sweep order) and the options that
    change the candidates (window radius, ``k``, tile side of the kernel)."""

    frame: int
    context: tuple[int, ...]
    window: int
    top_k: int
    tile: int


@dataclass(frozen=True)
class GlobalKey:
    """A frame's global match (one entry per frame, replaced when matched afresh)."""

    frame: int


@dataclass(frozen=True)
class GlobalOrigin:
    """What a kept global match was taken from: ``top_k`` and the reference blocks, in
    the row order of the table the kept indices point into."""

    top_k: int
    blocks: tuple[BlockKey, ...]


class Kept(NamedTuple):
    """One kept entry: views into the pool (copy before changing them) and its origin."""

    values: torch.Tensor
    index: torch.Tensor
    origin: object


class CandidatePool:
    """``(values, index)`` pairs of one shape kept in preallocated slots, within a budget.

    Parameters
    ----------
    budget_bytes : most bytes the slots may take (0 keeps nothing)
    max_entries : most slots, whatever the budget (more than a video can use is waste)
    evict : ``True`` replaces the least recently used entry when every slot is taken;
        ``False`` keeps the first entries and refuses new keys once full
    index_dtype : dtype the indices are stored in (None: as given)

    An entry of another shape or index dtype than the slots' reallocates the pool and
    drops every entry (a change of ``top_k`` or of the reference count below ``k``).
    """

    def __init__(self, budget_bytes: int, max_entries: int, evict: bool, index_dtype: torch.dtype | None = None):
        self._budget = int(budget_bytes)
        self.max_entries = int(max_entries)
        self.evict = evict
        self.index_dtype = index_dtype
        self._slots: OrderedDict[Hashable, tuple[int, object]] = OrderedDict()  # key -> (slot, origin)
        self._values: torch.Tensor | None = None
        self._index: torch.Tensor | None = None

    @property
    def budget_bytes(self) -> int:
        return self._budget

    @budget_bytes.setter
    def budget_bytes(self, value: int) -> None:
        """A new budget frees the slots; they are allocated again for the next entry."""
        self._budget = int(value)
        self.clear()

    @property
    def n_slots(self) -> int:
        """Slots allocated (0 before the first entry or when the budget holds none)."""
        return 0 if self._values is None else int(self._values.shape[0])

    @property
    def nbytes(self) -> int:
        if self._values is None:
            return 0
        return self._values.numel() * self._values.element_size() + self._index.numel() * self._index.element_size()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key) -> bool:
        return key in self._slots

    def keys(self) -> list:
        """Kept keys, least recently used first."""
        return list(self._slots)

    def clear(self) -> None:
        """Drop every entry and the slots' memory."""
        self._slots.clear()
        self._values = self._index = None

    def get(self, key) -> Kept | None:
        """The kept entry of ``key`` (marked most recently used), or None."""
        entry = self._slots.get(key)
        if entry is None:
            return None
        if self.evict:
            self._slots.move_to_end(key)
        slot, origin = entry
        return Kept(self._values[slot], self._index[slot], origin)

    def put(self, key, values: torch.Tensor, index: torch.Tensor, origin=None) -> bool:
        """Keep a copy of ``values``/``index`` under ``key``; False when it was not kept
        (no room within the budget, or full and not evicting)."""
        dtype = self.index_dtype or index.dtype
        if self._values is None or self._values.shape[1:] != values.shape or self._index.dtype != dtype:
            if not self._allocate(values, dtype):
                return False
        entry = self._slots.get(key)
        if entry is not None:
            slot = entry[0]
            self._slots.move_to_end(key)
        elif len(self._slots) < self.n_slots:
            slot = len(self._slots)
        elif self.evict:
            _, (slot, _) = self._slots.popitem(last=False)
        else:
            return False
        self._values[slot].copy_(values)
        self._index[slot].copy_(index)
        self._slots[key] = (slot, origin)
        return True

    def _allocate(self, values: torch.Tensor, index_dtype: torch.dtype) -> bool:
        self.clear()
        entry = values.numel() * (values.element_size() + torch.empty((), dtype=index_dtype).element_size())
        slots = min(self._budget // entry, self.max_entries)
        if slots < 1:
            return False
        shape = (slots,) + tuple(values.shape)
        self._values = values.new_empty(shape)
        self._index = torch.empty(shape, dtype=index_dtype, device=values.device)
        return True


def kept_rows(origin: GlobalOrigin, refs: References, device=None):
    """How a kept global match carries over to a new reference table.

    Returns ``(mapping, new_rows)``: ``mapping[i]`` is the new row of the kept match's row
    ``i`` and ``new_rows`` the rows of the blocks the match has not seen; or None when a
    kept block is not in the new table (it changed or went away: match afresh).
    """
    starts = refs.block_starts()
    if not all(key in starts for key in origin.blocks):
        return None
    mapping = torch.cat([torch.arange(key.size) + starts[key] for key in origin.blocks]).to(device)
    old = set(origin.blocks)
    new_rows = [torch.arange(key.size) + starts[key] for key in refs.blocks if key not in old]
    return mapping, (torch.cat(new_rows).to(device) if new_rows else None)
