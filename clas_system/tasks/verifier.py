"""Verification in the recognizer: each gallery item's local features kept in the gallery's side
store, a region's best few hits verified against them (tasks.verification), and the inliers
turned into score by a weight fitted on the gallery's own pairs.

    verifier = Verifier(gallery.side)
    verifier.keep(ids, images)                      # at add time: the items' keypoints, durable
    verifier.rescore(regions, hits, weight, score_thres)  # each region's hits, verified, best first
    calibration, weight = calibrate_with_inliers(gallery, verifier, 0.05, crowding_weight, fallback)

A verified hit scores `hit.score + weight.bonus(inliers)`: its (crowding) score plus the fitted
score of the inliers above what the gallery's wrong pairs reach. rec_scores and score_thres keep
their scale, and a hit with no inliers keeps its score. Only a region's VERIFY_K best hits are
verified, and only when that can change its decision (see Verifier.rescore): clear unknowns and
clear matches cost nothing.
"""
import collections
import dataclasses
import threading

import numpy as np

from . import verification
from .calibration import decide, gallery_pairs
from .decision import complete, fit_decision, fit_logistic

KIND = "keypoints"  # the side store's kind for an item's verification.to_bytes
VERIFY_K = 5  # best hits of a region verified
NOISE_INLIERS = 6  # the most inliers photos of different labels reached, gallery against gallery, on half
#                   of ../shared/openset's labels (the floor of a gallery whose wrong pairs reach fewer)
FLOOR_QUANTILE = 0.99  # of the gallery's wrong pairs' inliers: below it, no evidence
CACHE_ITEMS = 2000  # items' features kept decoded in memory (ids are never reused)
CACHE_PAIRS = 100_000  # gallery pairs' inliers remembered between calibrations


@dataclasses.dataclass(frozen=True)
class InlierWeight:
    floor: float  # inliers up to this are what the gallery's wrong pairs reach: no evidence
    weight: float  # score added per unit of log(1 + inliers above the floor)

    def evidence(self, inliers):
        return float(np.log1p(max(0.0, inliers - self.floor)))

    def bonus(self, inliers):
        return self.weight * self.evidence(inliers)

    @property
    def largest_bonus(self):
        return self.bonus(verification.MAX_KEYPOINTS)


NO_WEIGHT = InlierWeight(floor=0.0, weight=0.0)


class Verifier:
    def __init__(self, side):
        self.side = side
        self._lock = threading.Lock()
        self._cache = collections.OrderedDict()  # id -> LocalFeatures
        self._pairs = {}  # (item id, item id) -> inliers, for calibration
        self.regions_verified = 0  # in this process

    def keep(self, ids, images):
        """Store the local features of newly added items (RGB arrays, one per id)."""
        blobs = [verification.to_bytes(verification.extract(image)) for image in images]
        self.side.put(KIND, list(ids), blobs)

    def kept(self, ids):
        """{id: LocalFeatures} of the items among `ids` that have them."""
        with self._lock:
            found = {i: self._cache[i] for i in ids if i in self._cache}
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            loaded = {i: verification.from_bytes(blob) for i, blob in zip(missing, self.side.get(KIND, missing))
                      if blob is not None}
            with self._lock:
                self._cache.update(loaded)
                while len(self._cache) > CACHE_ITEMS:
                    self._cache.popitem(last=False)
            found.update(loaded)
        return found

    def inliers(self, query, ids):
        """{id: inliers} of a query region's LocalFeatures against the items among `ids` kept."""
        return {i: verification.verify(query, features).inliers for i, features in self.kept(ids).items()}

    def item_inliers(self, pairs):
        """{(item id, item id): inliers} of the given pairs of gallery items that both have keypoints.
        A pair's count never changes (ids are not reused), so each is verified once per process."""
        with self._lock:
            found = {pair: self._pairs[pair] for pair in pairs if pair in self._pairs}
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in found and min(pair) >= 0]
        kept = self.kept(sorted({i for pair in missing for i in pair}))
        computed = {(a, b): verification.verify(kept[a], kept[b]).inliers for a, b in missing
                    if a in kept and b in kept}
        with self._lock:
            self._pairs.update(computed)
            while len(self._pairs) > CACHE_PAIRS:
                self._pairs.pop(next(iter(self._pairs)))
        return {**found, **computed}

    def rescore(self, regions, hits_per_region, weight, score_thres):
        """Each region's hits (best first) with the bonus of their inliers, best first again;
        `regions` are the RGB crops the hits were searched for. A region is left as it is when
        verifying cannot change its decision: its best hit cannot reach score_thres even with the
        largest bonus, or it is accepted already and no other label's hit could overtake it."""
        if weight.weight <= 0:
            return hits_per_region
        rescored = []
        for region, hits in zip(regions, hits_per_region):
            reachable = [hit for hit in hits[:VERIFY_K] if hit.score + weight.largest_bonus >= score_thres]
            if not reachable or settled(hits, weight, score_thres):
                rescored.append(hits)
                continue
            inliers = self.inliers(verification.extract(region), [hit.id for hit in reachable])
            self.regions_verified += 1
            verified = [hit._replace(score=hit.score + weight.bonus(inliers.get(hit.id, 0))) for hit in reachable]
            rescored.append(sorted(verified + hits[len(reachable):], key=lambda hit: -hit.score))
        return rescored


def settled(hits, weight, score_thres):
    """Whether a region's best hit is accepted and no other label's hit among the verified ones
    could overtake it with the largest bonus (verifying can only raise scores)."""
    best = hits[0]
    return best.score >= score_thres and all(hit.score + weight.largest_bonus < best.score
                                             for hit in hits[1:VERIFY_K] if hit.label != best.label)


def pair_inliers(verifier, pairs):
    """Inliers of the gallery's own pairs (tasks.calibration.Pairs): (genuine, confuser, impostor)
    arrays, NaN where a pair has no candidate or an item has no local features."""
    wanted = [(q, own) for q, own, _other in pairs.genuine_ids.tolist()]
    wanted += [(q, other) for q, _own, other in pairs.genuine_ids.tolist()]
    wanted += [(q, c) for q, c in pairs.impostor_ids.tolist()]
    found = verifier.item_inliers(wanted)
    counts = np.array([found.get(pair, np.nan) for pair in wanted], np.float64)
    genuine_count = len(pairs.genuine_ids)
    return counts[:genuine_count], counts[genuine_count:2 * genuine_count], counts[2 * genuine_count:]


def fitted_weight(floor, genuine, impostor):
    """The InlierWeight of a logistic scorer fitted on (score, evidence) rows of genuine and
    impostor pairs: its evidence coefficient over its score coefficient; NO_WEIGHT when the fit
    gives the inliers no positive weight (or they never vary)."""
    genuine, impostor = complete(genuine), complete(impostor)
    if not len(genuine) or not len(impostor) or np.ptp(np.concatenate([genuine[:, 1], impostor[:, 1]])) == 0:
        return NO_WEIGHT
    (_, on_score, on_evidence), _mean, (score_scale, evidence_scale) = fit_logistic(genuine, impostor)
    if on_score <= 0 or on_evidence <= 0:
        return NO_WEIGHT
    return InlierWeight(floor, float(on_evidence * score_scale / (on_score * evidence_scale)))


def fit_inlier_weight(pairs, inliers, target_false_accept):
    """(InlierWeight, Decision) from the gallery's own pairs (tasks.calibration.Pairs) and their
    inliers (pair_inliers). Inliers count as evidence above the floor: what the gallery's wrong
    pairs (confusers and impostors: siblings share print) reach, at least NOISE_INLIERS. The
    weight is fitted_weight's on all pairs. The Decision thresholds the verified score, score +
    weight.bonus(inliers), as the recognizer computes it (a pair without keypoints gains nothing),
    at the target false-accept rate; its threshold and estimates come from each pair scored with
    the weight fitted on the other half of the pairs (impostors split by label), so the fit does
    not flatter its own estimate. Raises decision.TooFewSamples as fit_decision."""
    genuine_inliers, confuser_inliers, impostor_inliers = inliers
    wrong = np.concatenate([confuser_inliers, impostor_inliers])
    wrong = wrong[np.isfinite(wrong)]
    floor = max(float(NOISE_INLIERS), float(np.quantile(wrong, FLOOR_QUANTILE)) if len(wrong) else 0.0)
    unit = InlierWeight(floor, 1.0)
    evidence = np.vectorize(lambda n: unit.evidence(n) if np.isfinite(n) else 0.0, otypes=[float])
    genuine = np.column_stack([pairs.genuine[:, 0], evidence(genuine_inliers)]).reshape(-1, 2)
    confuser = np.column_stack([pairs.confuser[:, 0], evidence(confuser_inliers)]).reshape(-1, 2)
    impostor = np.column_stack([pairs.impostor[:, 0], evidence(impostor_inliers)]).reshape(-1, 2)
    genuine_folds, impostor_folds = np.arange(len(genuine)) % 2, np.asarray(pairs.impostor_folds)
    verified = [np.full(len(rows), np.nan) for rows in (genuine, confuser, impostor)]
    for fold in (0, 1):
        weight = fitted_weight(floor, genuine[genuine_folds != fold], impostor[impostor_folds != fold]).weight
        for out, rows, folds in zip(verified, (genuine, confuser, impostor),
                                    (genuine_folds, genuine_folds, impostor_folds)):
            out[folds == fold] = rows[folds == fold, 0] + weight * rows[folds == fold, 1]
    decision = fit_decision(verified[0][:, None], verified[2][:, None], target_false_accept,
                            confuser_rows=verified[1][:, None])
    return fitted_weight(floor, genuine, impostor), decision


def calibrate_with_inliers(gallery, verifier, target_false_accept, weight, fallback):
    """(tasks.calibration.Calibration, InlierWeight): the gallery's own threshold, fitted on its
    pairs' scores and inliers together; the one-column calibration and NO_WEIGHT when the
    gallery is too small to say or its inliers do not help."""
    pairs = gallery_pairs(gallery, weight)
    plain = decide(pairs, target_false_accept, fallback)
    if not plain.calibrated:
        return plain, NO_WEIGHT
    inlier_weight, decision = fit_inlier_weight(pairs, pair_inliers(verifier, pairs), target_false_accept)
    return dataclasses.replace(plain, score_thres=decision.threshold, decision=decision), inlier_weight
