"""The options of the label transfer, checked once where they are set.

Every option reaches the kernels as a plain ``int``/``float``/``bool``: a ``"3"`` or a
``2.5`` for ``top_k`` would otherwise surface deep in ``torch.topk`` as a ``TypeError``,
and ``temporal='no'`` would silently read as true.  The checks are those of
:mod:`simwidgets.checks`, so the messages match the rest of the package.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import checks
from ..errors import BadInputError

__all__ = ["TransferConfig", "WINDOW_PIXELS", "MASK_TOP_K", "MASK_REFINE_RADIUS", "MASK_MIRROR"]

#: radius of the temporal context's spatial window, in pixels, when ``window`` is None
WINDOW_PIXELS = 48


#: ``top_k`` for propagating full masks (:meth:`TransferConfig.for_masks`).  On the 5-fold
#: scheme semi-supervised J&F was 0.799 at 20, 0.809 at 10 and 0.814 at 5 (5 against 20:
#: +0.015 ± 0.004, higher on 23 of 25 sequences; ``benchmarks/results/kfold*.md``): a mask
#: gives thousands of references and the nearest few are the informative ones.  Scribbles
#: give a few hundred, and on the DAVIS protocol 20 kept the loop's curve higher (final J&F
#: 0.873 at 20 against 0.868 at 5 on 12 sequences; ``benchmarks/results/interactive_*``)
MASK_TOP_K = 5

#: ``refine_radius`` for propagating full masks (:meth:`TransferConfig.for_masks`).  On the
#: 5-fold scheme (models retrained 2026-12-02) a guided filter of radius 2 cells against 1
#: scored J&F 0.822 against 0.817: +0.005 ± 0.002 per sequence, higher on 18 of 25, F
#: +0.007 and J +0.004 (``benchmarks/results/kfold_mask_options.md``).  The interactive
#: loop keeps 1: it was not measured there
MASK_REFINE_RADIUS = 2

#: ``mirror`` for propagating full masks (:meth:`TransferConfig.for_masks`).  On the 5-fold
#: scheme (the fold models retrained 2026-12-07) semi-supervised J&F 0.830 against 0.822:
#: +0.008 ± 0.002 per sequence, higher on 18 of 25, J +0.006 and F +0.010
#: (``benchmarks/results/kfold_mirror.md``), for 1.7-1.8x the network time (less with the
#: network compiled for the CPU, :mod:`simwidgets.models.compiled`).  The interactive loop
#: keeps it off: on the DAVIS protocol (28 sequences, fold models) it tied, final J&F +0.002
#: ± 0.006, for 1.7-1.8x the first round's network time
#: (``benchmarks/results/interactive_kfold_mirror.md``)
MASK_MIRROR = True


@dataclass(frozen=True)
class TransferConfig:
    """Options of the label transfer.

    Attributes
    ----------
    top_k : number of nearest references that vote for a query cell.  20 for scribbles
        (the interactive loop); propagating full masks (semi-supervised) is better with
        fewer, so :meth:`for_masks` gives 5 (:data:`MASK_TOP_K`)
    temperature : softmax temperature of the votes (smaller = nearest dominate)
    temporal : also use earlier frames' predictions as references (local window)
    n_context : how many previous frames serve as context when ``temporal``
    window : radius, in grid cells, of the spatial window for context references; None
        (the default) means :data:`WINDOW_PIXELS` pixels at the model's stride (12 cells
        at stride 4, 6 at stride 8): the window is about how far an object moves between
        frames, which is counted in pixels (at stride 8, 6 cells scored as well as 12 on
        the nine validation sequences, and match a quarter of the keys)
    brush_width : pixel width used to rasterise scribble strokes
    background_margin : on every annotated frame where every object is marked, cells that no
        stroke covers and that lie farther than this fraction of the frame diagonal from all
        object strokes serve as background references (the DAVIS protocol's first human
        scribbles mark objects only, and a few background strokes rarely cover the scene);
        a frame where only some objects are marked says nothing about the rest of it, so it
        gets none; ``None`` disables it
    refine : edge-aware upsampling: the grid scores become full-resolution masks through a
        guided filter on the frame's colours (:mod:`.refine`), so mask edges follow image
        edges instead of the grid; ``False`` upsamples bilinearly
    refine_radius : the guided filter's window radius, in grid cells (:meth:`for_masks`:
        :data:`MASK_REFINE_RADIUS`)
    refine_eps : its regularisation (colour variance on a 0..1 scale below which a window
        counts as flat, i.e. keeps the bilinear scores)
    max_references : cap on the reference cells of each annotated frame: the user's own
        cells first (all of a frame's strokes fit; of a full mask, with tens of thousands
        of cells, a class-stratified random subset is kept, since the temporal context
        already carries its detail), then automatic background cells up to one class's
        share
    fuse_corrections : in an :class:`~simwidgets.session.InteractiveSession`, a correction
        round recomputes only the frames between the unchanged annotated frames around the
        corrected ones and blends the new scores with the previous round's linearly in time
        (:mod:`.fusion`, after MiVOS), so a correction cannot undo earlier ones far away,
        and costs the frames it may change.  Off by default: it also keeps a correction
        from improving frames beyond the earlier interactions, and on the DAVIS protocol
        that reach is worth more (``benchmarks/results/interactive_fusion_ab.md``)
    local_corrections : in an :class:`~simwidgets.session.InteractiveSession`, a frame
        corrected after the user saw its result keeps that result except in the connected
        regions the new transfer gives to a stroke's label and that touch such a stroke
        (:mod:`.local_edit`: an object stroke only adds to its object, a background stroke
        only removes); other frames take the whole new transfer.  A correction then cannot
        move its own frame away from what it asked for.  On by default: on the DAVIS
        protocol (12 unseen sequences) the loop's curve was the same as with whole rounds
        (+0.144 against +0.145 from the first to the eighth interaction) and the corrected
        frames that fell went from 4 of 83 (worst -0.027) to 2 (worst -0.011)
        (``benchmarks/results/interactive_validation_and_demos.md``)
    local_nearest_stroke : with ``local_corrections``, where one correction draws strokes of
        several labels on a frame, a pixel of that frame takes a stroke's label only where
        that stroke is nearer than every stroke of another label (:mod:`.local_edit`), so a
        background stroke on a false positive cannot remove the object beside the object
        strokes of the same correction
    local_depth : with ``local_corrections``, a stroke's change reaches at most this many
        times as far from the stroke as the stroke lies inside the region it corrects (the
        distance from its pixels to the nearest pixel the user saw with the stroke's label),
        each connected stroke on its own (:mod:`.local_edit`): a stroke along a thin error
        at an object's edge fixes that edge, not the object behind it (rollerblade, fold-1
        model, interaction 3: background strokes 3-4 pixels inside the shown mask's edge
        removed the whole shirt, J 0.804 -> 0.512; 0.728 with this bound); a stroke along
        the middle of a large error (the robot draws on its skeleton) reaches all of it.
        ``None``: no bound.  1 by default, with ``reference_depth`` and
        ``correction_reach`` (measured together, see there)
    local_edge_cost : with ``local_depth``, that reach is measured along the frame instead
        of in a straight line: a step between neighbouring pixels costs its length times
        1 + this times the colour difference it crosses above
        :data:`~simwidgets.transfer.geodesic.EDGE_FREE` (Delta E, CIE L*a*b*), so a stroke's
        change stops at the image's edges (:mod:`.geodesic`): a background stroke through
        the gap inside a motorbike's wheel no longer takes the tyre and engine around it
        (motorbike, fold-3 model, interaction 7, the same inputs: 0.779 -> 0.696 in a
        straight line, -> 0.773 along the frame at cost 1, -> 0.787 at cost 2; in the
        protocol run at cost 1 the robot's path differs a little and that correction
        lifted its frame, 0.778 -> 0.813).  ``None``: straight-line distance.  1 by
        default: on the DAVIS protocol (28 sequences, each unseen by its fold's model) no
        corrected frame of 196 fell in its own round (3 in a straight line, the worst by
        0.083; 1 at cost 2, by 0.051), no sequence ended below its first interaction, and
        the gain from the first to the last interaction was +0.101 against +0.103 (final
        J&F -0.003 ± 0.002; ``benchmarks/results/interactive_kfold_edge_cost.md``)
    reference_depth : in an :class:`~simwidgets.session.InteractiveSession`, the pixels of a
        correction stroke that lie less than this many grid cells from the edge of the
        region the user saw with the stroke's label (inside the region it corrects, or, for
        a pixel that was already right, inside its own) are no reference cells: such a cell
        straddles that edge, its embedding partly of the other side, and as a reference it relabels that label's look-alikes in every
        frame (breakdance-flare, fold-0 model, interaction 3: background strokes along the
        dancer's edge took the video from 0.931 to 0.752; 0.933 without them as
        references).  They keep their labels on their frame, at full resolution.  ``None``:
        every stroke pixel is a reference.  1 by default.  With ``local_depth`` 1 and
        ``correction_reach`` 30 (the defaults), on the DAVIS protocol over 28 sequences, each
        unseen by its fold's model, 1 of 196 corrected frames fell in their own round
        (soccerball, -0.129) against 20 of 195 (worst -0.232) with none of the three, no
        sequence ended below its first interaction (2 did), and the final J&F was 0.843
        against 0.836 (+0.007 ± 0.009); with reach 10, 2 fell and 0.840; the depth rules
        alone: 6 fell, 0.843; reach 10 alone: 9 fell, 0.839
        (``benchmarks/results/interactive_kfold_depth_reach30.md``)
    correction_masks : in an :class:`~simwidgets.session.InteractiveSession`, each frame
        corrected after the user saw its result becomes a full reference mask: the mask the
        user saw, edited where the correction's strokes reach (``local_corrections``' rule,
        on a quick transfer of that frame alone), is given to the round as that frame's
        labels, as a mask of the user's own would be.  A correction then reaches the other
        frames with the whole corrected frame (hundreds of object and background cells
        where the strokes alone give a few dozen) and that frame keeps it in later rounds.
        Off by default: on the DAVIS protocol (28 sequences, each unseen by its fold's
        model) fewer corrected frames fell (14 of 196, worst -0.094, against 20 of 195,
        worst -0.232) and swing and kite-walk rose, but the curve fell, final J&F 0.809
        against 0.836 (-0.027 ± 0.020, higher on 11 of 28): the parts of the corrected
        frame no stroke touched become references as if checked, and where they were wrong
        the video collapsed (mallard-water 0.924 -> 0.516, boat 0.756 -> 0.491;
        ``benchmarks/results/interactive_kfold_correction_masks.md``)
    correction_reach : in an :class:`~simwidgets.session.InteractiveSession`, the global
        references of a frame corrected after the user saw its result weigh less the
        farther a frame is from it: ``exp(-distance / correction_reach)`` times the vote
        weight of an equally similar earlier reference (:mod:`.reach`), so a correction's
        few stroke cells cannot relabel look-alike cells of far frames; the correction
        still travels through the temporal sweeps.  In frames; ``None``: a correction's
        references count the same in every frame.  30 by default: against 10, with the
        depth rules, final J&F +0.003 ± 0.003 (higher on 18 of 28 sequences) and AUC +0.003
        ± 0.002 (see ``reference_depth`` for the other figures)
    corrected_context : in an :class:`~simwidgets.session.InteractiveSession`, a corrected
        frame passes on to its neighbours in the temporal sweeps the mask the user gets
        (the new transfer as the session edits it there: ``local_corrections``, and the
        stroke pixels ``reference_depth`` keeps from the references), not the new
        transfer's raw scores: the cells the edit changes take the
        edited labels before the frame serves as context.  Without it a correction's
        references could move look-alike cells of its own frame that no stroke asked to
        change; the local edit kept them on that frame, but the sweeps carried the change
        to the frames around it (scooter-gray, fold-0 model, interaction 7: the raw
        transfer of the corrected frame lost 80 % of the object, the frame kept 0.84, and
        the video fell 0.747 -> 0.441).  On by default: on the DAVIS protocol (28 sequences,
        each unseen by its fold's model) final J&F +0.005 ± 0.004 against off (higher on
        23 of 28), the gain from the first to the last interaction +0.103 against +0.098,
        no sequence ended below its first interaction (2 without it) and 3 of 196
        corrected frames fell in their own round, the worst by 0.083 (5 without it, the
        worst by 0.165; ``benchmarks/results/interactive_kfold_corrected_context.md``)
    mirror : embed each frame together with its left-right mirror image and average the
        two (:meth:`~simwidgets.models.EmbeddingModel.mirror_averaged`; 1.7-1.8x the
        network time), so a cell's vector does not depend on which way the scene faces.
        Fixed for a :class:`~simwidgets.transfer.LabelTransfer`'s (or a session's) life:
        its embeddings are cached.  On the 5-fold scheme (full masks) semi-supervised J&F
        0.830 against 0.822: +0.008 ± 0.002, higher on 18 of 25 sequences, F +0.010
        (``benchmarks/results/kfold_mirror.md``); on by default for full masks
        (:data:`MASK_MIRROR`), off for scribbles
    """

    top_k: int = 20
    temperature: float = 0.05
    temporal: bool = True
    n_context: int = 3
    window: int | None = None
    brush_width: float = 3.0
    background_margin: float | None = 0.15
    max_references: int = 2048
    refine: bool = True
    refine_radius: int = 1
    refine_eps: float = 1e-4
    fuse_corrections: bool = False
    local_corrections: bool = True
    local_nearest_stroke: bool = True
    local_depth: float | None = 1.0
    local_edge_cost: float | None = 1.0
    reference_depth: float | None = 1.0
    correction_masks: bool = False
    correction_reach: float | None = 30.0
    corrected_context: bool = True
    mirror: bool = False

    def __post_init__(self):
        checked = {
            "top_k": checks.positive_int(self.top_k, "top_k"),
            "temperature": checks.positive_float(self.temperature, "temperature"),
            "temporal": checks.boolean(self.temporal, "temporal"),
            "n_context": checks.non_negative_int(self.n_context, "n_context"),
            "window": None if self.window is None else checks.non_negative_int(self.window, "window"),
            "brush_width": checks.positive_float(self.brush_width, "brush_width"),
            "background_margin": _margin(self.background_margin),
            "max_references": checks.positive_int(self.max_references, "max_references"),
            "refine": checks.boolean(self.refine, "refine"),
            "refine_radius": checks.non_negative_int(self.refine_radius, "refine_radius"),
            "refine_eps": checks.positive_float(self.refine_eps, "refine_eps"),
            "fuse_corrections": checks.boolean(self.fuse_corrections, "fuse_corrections"),
            "local_corrections": checks.boolean(self.local_corrections, "local_corrections"),
            "local_nearest_stroke": checks.boolean(self.local_nearest_stroke, "local_nearest_stroke"),
            "local_depth": None if self.local_depth is None else checks.positive_float(self.local_depth, "local_depth"),
            "local_edge_cost": None if self.local_edge_cost is None
            else checks.positive_float(self.local_edge_cost, "local_edge_cost"),
            "reference_depth": None if self.reference_depth is None
            else checks.positive_float(self.reference_depth, "reference_depth"),
            "correction_masks": checks.boolean(self.correction_masks, "correction_masks"),
            "correction_reach": None if self.correction_reach is None
            else checks.positive_float(self.correction_reach, "correction_reach"),
            "corrected_context": checks.boolean(self.corrected_context, "corrected_context"),
            "mirror": checks.boolean(self.mirror, "mirror"),
        }
        for name, value in checked.items():  # canonical types: frozen, so through object
            object.__setattr__(self, name, value)

    @classmethod
    def for_masks(cls, **options) -> "TransferConfig":
        """Options for propagating full masks (semi-supervised): ``top_k`` :data:`MASK_TOP_K`,
        ``refine_radius`` :data:`MASK_REFINE_RADIUS` and ``mirror`` :data:`MASK_MIRROR` unless given; what
        :func:`~simwidgets.evaluation.evaluate_semi_supervised` and the CLI's
        ``--first-mask``/``--masks`` use."""
        defaults = {"top_k": MASK_TOP_K, "refine_radius": MASK_REFINE_RADIUS, "mirror": MASK_MIRROR}
        return cls().with_options(**(defaults | options))

    def for_stride(self, stride: int) -> "TransferConfig":
        """This configuration with ``window`` in cells for a model of this output stride."""
        if self.window is not None:
            return self
        return dataclasses.replace(self, window=max(1, round(WINDOW_PIXELS / int(stride))))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The names :meth:`with_options` accepts, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_options(self, **options) -> "TransferConfig":
        """A copy with some options changed; an unknown name raises :class:`BadInputError`
        naming it and listing the valid ones (``dataclasses.replace`` raises ``TypeError``)."""
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            raise BadInputError(
                f"unknown transfer option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(self.option_names())}"
            )
        return dataclasses.replace(self, **options) if options else self


def _margin(value) -> float | None:
    """``None`` (no automatic background) or a finite fraction >= 0 of the diagonal."""
    if value is None:
        return None
    margin = checks.finite_float(value, "background_margin")
    if margin < 0:
        raise BadInputError(f"background_margin must be 0 or more (a fraction of the diagonal); got {margin}")
    return margin
