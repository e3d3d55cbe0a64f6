"""Verification in the recognizer: each gallery item's local features kept in the gallery's side
store, a region's best few hits verified against them (tasks.verification), and the inliers
turned into score by a weight fitted on the gallery's own pairs.

    verifier = Verifier(gallery.side)
    verifier.keep(ids, images)                      # at add time: the items' keypoints, durable
    verifier.rescore(regions, hits, weight, score_thres)  # each region's hits, verified, best first
    weight, threshold = fit_inlier_weight(pairs, pair_inliers(verifier, pairs), 0.05)

A verified hit scores `hit.score + weight.bonus(inliers)`: its (crowding) score plus the fitted
score of the inliers above what impostor pairs reach. rec_scores and score_thres keep their
scale, and a hit with no inliers keeps its score. A region is only verified when its best hit
could reach score_thres with the largest bonus there is, so clear unknowns cost nothing; only
its VERIFY_K best hits are verified.
"""
import collections
import dataclasses
import threading

import numpy as np

from . import verification
from .decision import fit_decision

KIND = "keypoints"  # the side store's kind for an item's verification.to_bytes
VERIFY_K = 5  # best hits of a region verified
FLOOR_QUANTILE = 0.95  # inliers of impostor pairs below this share are noise, not evidence
CACHE_ITEMS = 2000  # items' features kept decoded in memory (ids are never reused)


@dataclasses.dataclass(frozen=True)
class InlierWeight:
    floor: float  # inliers up to this are what the gallery's impostor pairs reach: no evidence
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

    def rescore(self, regions, hits_per_region, weight, score_thres):
        """Each region's hits (best first) with the bonus of their inliers, best first again;
        `regions` are the RGB crops the hits were searched for. Regions whose best hit cannot
        reach score_thres even with the largest bonus are left as they are."""
        if weight.weight <= 0:
            return hits_per_region
        rescored = []
        for region, hits in zip(regions, hits_per_region):
            reachable = [hit for hit in hits[:VERIFY_K] if hit.score + weight.largest_bonus >= score_thres]
            if not reachable:
                rescored.append(hits)
                continue
            inliers = self.inliers(verification.extract(region), [hit.id for hit in reachable])
            verified = [hit._replace(score=hit.score + weight.bonus(inliers.get(hit.id, 0))) for hit in reachable]
            rescored.append(sorted(verified + hits[len(reachable):], key=lambda hit: -hit.score))
        return rescored


def pair_inliers(verifier, pairs):
    """Inliers of the gallery's own pairs (tasks.calibration.Pairs): (genuine, confuser, impostor)
    arrays, NaN where a pair has no candidate or an item has no local features."""
    ids = {int(i) for i in np.concatenate([pairs.genuine_ids.ravel(), pairs.impostor_ids.ravel()]) if i >= 0}
    kept = verifier.kept(sorted(ids))

    def inliers(query_id, candidate_id):
        if query_id not in kept or candidate_id not in kept:
            return np.nan
        return float(verification.verify(kept[query_id], kept[candidate_id]).inliers)

    genuine = np.array([inliers(q, own) for q, own, _other in pairs.genuine_ids.tolist()], np.float64)
    confuser = np.array([inliers(q, other) for q, _own, other in pairs.genuine_ids.tolist()], np.float64)
    impostor = np.array([inliers(q, c) for q, c in pairs.impostor_ids.tolist()], np.float64)
    return genuine, confuser, impostor


def fit_inlier_weight(pairs, inliers, target_false_accept):
    """(InlierWeight, Decision) fitted on the gallery's own pairs: a logistic scorer on (score,
    evidence) turned back into score units, so that `score + weight.bonus(inliers) >= threshold`
    is its decision; the Decision's threshold is in those units. NO_WEIGHT and the one-column
    Decision when the inliers do not help (the fit gives them no positive weight) or are missing.
    Raises decision.TooFewSamples as fit_decision."""
    genuine_inliers, confuser_inliers, impostor_inliers = inliers
    seen = impostor_inliers[np.isfinite(impostor_inliers)]
    floor = float(np.quantile(seen, FLOOR_QUANTILE)) if len(seen) else 0.0
    evidence = np.vectorize(lambda n: InlierWeight(floor, 1.0).evidence(n) if np.isfinite(n) else np.nan, otypes=[float])

    def rows(score_rows, pair_inliers_):
        return np.column_stack([score_rows[:, 0], evidence(pair_inliers_)]) if len(score_rows) else np.zeros((0, 2))

    two = fit_decision(rows(pairs.genuine, genuine_inliers), rows(pairs.impostor, impostor_inliers),
                       target_false_accept, confuser_rows=rows(pairs.confuser, confuser_inliers),
                       impostor_folds=pairs.impostor_folds)
    one = fit_decision(pairs.genuine[:, :1], pairs.impostor[:, :1], target_false_accept,
                       confuser_rows=pairs.confuser[:, :1])
    if two.weights is None or two.weights[1] <= 0 or two.weights[2] <= 0:
        return NO_WEIGHT, one
    intercept, on_score, on_evidence = two.weights
    (score_mean, evidence_mean), (score_scale, evidence_scale) = two.mean, two.scale
    weight = on_evidence * score_scale / (on_score * evidence_scale)
    threshold = score_mean + score_scale * (two.threshold - intercept + on_evidence * evidence_mean / evidence_scale) / on_score
    return InlierWeight(floor, float(weight)), dataclasses.replace(two, threshold=float(threshold), weights=None,
                                                                   mean=None, scale=None)

