"""Accept or reject a (query, candidate) pair at a target false-accept rate, fitted on rows of
known matches (genuine) and of things that must be rejected (impostor):

    decision = fit_decision(genuine_rows, impostor_rows, target_false_accept=0.05, confuser_rows=confusers)
    decision.accepts(rows)        # -> bool per row
    decision.threshold, decision.estimated_false_accept, decision.estimated_known_right

A row is one pair's features, first column the recognizer's score (tasks.calibration.COLUMNS).
With one column the threshold is on that score. With more, a logistic scorer is fitted on the
rows (standardised, Newton steps, a small ridge) and the threshold is on its logit; the
threshold is then set on impostor logits of a model fitted without their label (two folds), so
the fit does not flatter its own estimate.

The threshold is the conformal quantile of the impostor scores: with m of them sorted, the k-th
smallest for k = ceil((1 - target) * (m + 1)); the threshold is the next float above it, and a
score at or above the threshold is accepted (as the recognizer's score_thres). A new impostor
exchangeable with these exceeds the k-th with probability (m + 1 - k) / (m + 1) <= target: that is the
estimated false-accept rate (the raw empirical quantile promises target and delivers more on
small samples). It needs m >= 1 / target - 1 impostors; with fewer, fit_decision raises
TooFewSamples.

Estimated known rates come from genuine rows (a known query's own label's best candidate) and
confuser rows (its best candidate of another label), NaN where there is none: known accept is
the share where either is accepted, known right where the own label is accepted and outscores
the other.
"""
import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from ..errors import BadRequest

RIDGE = 1.0  # L2 penalty on the standardised weights
NEWTON_STEPS = 25


class TooFewSamples(BadRequest):
    """Too few rows to set a threshold at the target (the message says how many are needed)."""
    code = "bad_request"


@dataclasses.dataclass(frozen=True)
class Decision:
    threshold: float  # accepted: score at or above it
    target_false_accept: float
    estimated_false_accept: float
    estimated_known_accept: Optional[float]  # None without genuine rows
    estimated_known_right: Optional[float]
    genuine: int  # rows it was fitted on
    impostor: int
    weights: Optional[Tuple[float, ...]] = None  # None: the first column is the score
    mean: Optional[Tuple[float, ...]] = None
    scale: Optional[Tuple[float, ...]] = None

    def scores(self, rows):
        """Each row's score: its first column, or the fitted scorer's logit."""
        rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
        if self.weights is None:
            return rows[:, 0]
        return logit(self.weights, standardised(rows, self.mean, self.scale))

    def accepts(self, rows):
        return np.nan_to_num(self.scores(rows), nan=-np.inf) >= self.threshold

    def as_dict(self):
        return {"threshold": self.threshold, "target_false_accept": self.target_false_accept,
                "estimated_false_accept": self.estimated_false_accept,
                "estimated_known_accept": self.estimated_known_accept,
                "estimated_known_right": self.estimated_known_right,
                "genuine": self.genuine, "impostor": self.impostor}


def needed_impostors(target_false_accept):
    """The fewest impostors whose conformal quantile reaches the target."""
    return max(1, math.ceil(1.0 / target_false_accept - 1.0 - 1e-9))


def conformal_threshold(impostor_scores, target_false_accept):
    """(threshold, estimated false-accept rate): see the module docstring."""
    scores = np.sort(np.asarray(impostor_scores, np.float64))
    scores = scores[np.isfinite(scores)]
    m = len(scores)
    k = math.ceil((1.0 - target_false_accept) * (m + 1) - 1e-9)
    if m < needed_impostors(target_false_accept) or k > m:
        raise TooFewSamples(f"{m} impostor samples; a false-accept rate of {target_false_accept} needs at least "
                            f"{needed_impostors(target_false_accept)}")
    return float(np.nextafter(scores[k - 1], np.inf)), (m + 1 - k) / (m + 1)


def known_rates(own_scores, other_scores, threshold):
    """(known accept, known right) at `threshold`; None without rows."""
    if len(own_scores) == 0:
        return None, None
    own = np.nan_to_num(np.asarray(own_scores, np.float64), nan=-np.inf)
    other = np.nan_to_num(np.asarray(other_scores, np.float64), nan=-np.inf)
    accepted = np.maximum(own, other) >= threshold
    right = (own >= threshold) & (own > other)
    return float(accepted.mean()), float(right.mean())


def standardised(rows, mean, scale):
    return (rows - np.asarray(mean)) / np.asarray(scale)


def logit(weights, standard_rows):
    weights = np.asarray(weights)
    return standard_rows @ weights[1:] + weights[0]


def fit_logistic(positive, negative):
    """(weights with the intercept first, mean, scale) of a ridge logistic regression."""
    rows = np.vstack([positive, negative])
    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = np.hstack([np.ones((len(rows), 1)), standardised(rows, mean, scale)])
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    penalty = np.diag([0.0] + [RIDGE] * (x.shape[1] - 1))
    weights = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ weights)))
        gradient = x.T @ (p - y) + penalty @ weights
        hessian = (x.T * (p * (1 - p))) @ x + penalty + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return tuple(weights.tolist()), tuple(mean.tolist()), tuple(scale.tolist())


def out_of_fold_logits(genuine, impostor, impostor_folds):
    """Each impostor's logit from a scorer fitted without its fold (genuine rows split alike)."""
    logits = np.empty(len(impostor))
    genuine_folds = np.arange(len(genuine)) % 2
    for fold in (0, 1):
        held = impostor_folds == fold
        weights, mean, scale = fit_logistic(genuine[genuine_folds != fold], impostor[~held])
        logits[held] = logit(weights, standardised(impostor[held], mean, scale))
    return logits


def complete(rows):
    rows = np.asarray(rows, np.float64)
    return rows[np.all(np.isfinite(rows), axis=1)]


def fit_decision(genuine_rows, impostor_rows, target_false_accept, confuser_rows=None,
                 impostor_folds=None) -> Decision:
    """A Decision at the target false-accept rate (module docstring). `confuser_rows`, aligned
    with `genuine_rows`, give the known-right estimate; `impostor_folds` (0/1 per impostor row,
    e.g. by label) keep the multi-column threshold off the scorer's own fit."""
    if not 0.0 < target_false_accept < 1.0:
        raise ValueError(f"target_false_accept must be between 0 and 1, got {target_false_accept}")
    genuine_rows = np.asarray(genuine_rows, np.float64).reshape(len(genuine_rows), -1)
    impostor_rows = np.asarray(impostor_rows, np.float64).reshape(len(impostor_rows), -1)
    confuser_rows = (np.full_like(genuine_rows, np.nan) if confuser_rows is None
                     else np.asarray(confuser_rows, np.float64).reshape(genuine_rows.shape))
    impostors = complete(impostor_rows)
    weights = mean = scale = None
    if impostor_rows.shape[1] == 1 or len(complete(genuine_rows)) == 0:
        impostor_scores = impostors[:, 0]
    else:
        folds = (np.arange(len(impostor_rows)) % 2 if impostor_folds is None
                 else np.asarray(impostor_folds))[np.all(np.isfinite(impostor_rows), axis=1)]
        impostor_scores = out_of_fold_logits(complete(genuine_rows), impostors, folds)
        weights, mean, scale = fit_logistic(complete(genuine_rows), impostors)
    threshold, estimated = conformal_threshold(impostor_scores, target_false_accept)
    decision = Decision(threshold=threshold, target_false_accept=target_false_accept,
                        estimated_false_accept=estimated, estimated_known_accept=None,
                        estimated_known_right=None, genuine=len(genuine_rows), impostor=len(impostors),
                        weights=weights, mean=mean, scale=scale)
    known_accept, known_right = known_rates(decision.scores(genuine_rows), decision.scores(confuser_rows),
                                            threshold)
    return dataclasses.replace(decision, estimated_known_accept=known_accept, estimated_known_right=known_right)
