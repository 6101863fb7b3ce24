"""Honest evaluation: J and F, the semi-supervised protocol and the DAVIS interactive one.

* :mod:`~simwidgets.evaluation.metrics` -- region similarity J and boundary F per frame and
  object, as davisinteractive computes them; AUC and metric@time of a J&F-time curve;
* :mod:`~simwidgets.evaluation.semi` -- frame 0's mask to every frame (CLI, training
  validation, notebooks: one evaluator);
* :mod:`~simwidgets.evaluation.interactive` -- the DAVIS interactive protocol offline, with
  davisinteractive's own robot and scorer;
* :mod:`~simwidgets.evaluation.davis_compat` -- what davisinteractive 1.0.4 needs to run
  offline on current numpy, networkx and pandas.

Importing this package needs neither torch nor davisinteractive; both load on first use.
"""
from .interactive import CHALLENGE_SECONDS_PER_INTERACTION, MAX_INTERACTIONS, evaluate_interactive
from .metrics import BOUND_TH, MaskScores, auc, boundary_map, evaluate_masks, f_measure, jaccard, metric_at
from .semi import evaluate_semi_supervised

__all__ = [
    "jaccard",
    "f_measure",
    "boundary_map",
    "evaluate_masks",
    "MaskScores",
    "auc",
    "metric_at",
    "BOUND_TH",
    "evaluate_semi_supervised",
    "evaluate_interactive",
    "CHALLENGE_SECONDS_PER_INTERACTION",
    "MAX_INTERACTIONS",
]
