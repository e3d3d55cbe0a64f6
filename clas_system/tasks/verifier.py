"""Verification in the recognizer: each gallery item's local features kept in the gallery's side
store, a region's best few hits verified against them (tasks.verification), and the inliers
turned into score by a weight fitted on the gallery's own pairs.

    verifier = Verifier(gallery.side)
    verifier.keep(ids, images)                      # at add time: the items' keypoints, durable
    verifier.rescore(regions, hits, weight, score_thres)  # each region's hits, verified, best first
    calibration, weight = calibrate_with_inliers(gallery, verifier, 0.05, crowding_weight, fallback)

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
from .calibration import decide, gallery_pairs
from .decision import complete, fit_decision, fit_logistic

KIND = "keypoints"  # the side store's kind for an item's verification.to_bytes
VERIFY_K = 5  # best hits of a region verified
NOISE_INLIERS = 6  # the most inliers unrelated photos reach (measured: docs/recognition.md)
FLOOR_QUANTILE = 0.99  # of the gallery's wrong pairs' inliers: below it, no evidence
CACHE_ITEMS = 2000  # items' features kept decoded in memory (ids are never reused)


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
            self.regions_verified += 1
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
    """(InlierWeight, Decision) from the gallery's own pairs (tasks.calibration.Pairs) and their
    inliers (pair_inliers). Inliers count as evidence above the floor: what the gallery's wrong
    pairs (confusers and impostors: siblings share print) reach, at least NOISE_INLIERS. The weight is a logistic scorer's on (score, evidence) in score units
    (its evidence coefficient over its score coefficient); the Decision thresholds the verified
    score, score + weight.bonus(inliers), as the recognizer computes it (a pair without keypoints
    gains nothing), at the target false-accept rate. NO_WEIGHT, and the plain score's Decision,
    when the fit gives the inliers no positive weight. Raises decision.TooFewSamples as fit_decision."""
    genuine_inliers, confuser_inliers, impostor_inliers = inliers
    wrong = np.concatenate([confuser_inliers, impostor_inliers])
    wrong = wrong[np.isfinite(wrong)]
    floor = max(float(NOISE_INLIERS), float(np.quantile(wrong, FLOOR_QUANTILE)) if len(wrong) else 0.0)
    unit = InlierWeight(floor, 1.0)
    evidence = np.vectorize(lambda n: unit.evidence(n) if np.isfinite(n) else 0.0, otypes=[float])

    def rows(score_rows, pair_inliers_):
        return np.column_stack([score_rows[:, 0], evidence(pair_inliers_)]).reshape(-1, 2)

    genuine, impostor = complete(rows(pairs.genuine, genuine_inliers)), complete(rows(pairs.impostor, impostor_inliers))
    weight = NO_WEIGHT
    if len(genuine) and len(impostor) and np.ptp(np.concatenate([genuine[:, 1], impostor[:, 1]])) > 0:
        (_, on_score, on_evidence), _mean, (score_scale, evidence_scale) = fit_logistic(genuine, impostor)
        if on_score > 0 and on_evidence > 0:
            weight = InlierWeight(floor, float(on_evidence * score_scale / (on_score * evidence_scale)))

    def verified(score_rows, pair_inliers_):
        return (score_rows[:, 0] + weight.weight * evidence(pair_inliers_))[:, None]

    decision = fit_decision(verified(pairs.genuine, genuine_inliers), verified(pairs.impostor, impostor_inliers),
                            target_false_accept, confuser_rows=verified(pairs.confuser, confuser_inliers))
    return weight, decision


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
