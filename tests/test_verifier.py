"""tasks.verifier: keypoints kept per item through a side store, a region's hits re-scored by
their inliers, and the inlier weight fitted on pairs turned back into score units exactly."""
import numpy as np
import pytest

from clas_system.gallery.interface import Hit
from clas_system.ops.decode import decode_image
from clas_system.tasks import verifier as verifier_module
from clas_system.tasks.calibration import Pairs
from clas_system.tasks.decision import fit_decision, fit_logistic
from clas_system.tasks.verifier import NO_WEIGHT, InlierWeight, Verifier, fit_inlier_weight
from harness.payloads import SHARED_IMAGES
from params.recognition import load_recognition_settings
from params.schema import ParamsError

OPENSET = SHARED_IMAGES.parent / "openset"


class MemorySide:
    """The side store's put/get, in memory (the gallery's own is tested with the gallery)."""

    def __init__(self):
        self.blobs = {}
        self.gets = 0

    def put(self, kind, ids, blobs):
        self.blobs.update({(kind, int(i)): bytes(b) for i, b in zip(ids, blobs)})

    def get(self, kind, ids):
        self.gets += 1
        return [self.blobs.get((kind, int(i))) for i in ids]


def photo(relative):
    return decode_image((OPENSET / relative).read_bytes())


def test_a_region_s_own_item_is_lifted_above_a_closer_looking_other_label():
    verifier = Verifier(MemorySide())
    verifier.keep([7, 8], [photo("gallery/ukb-brio-box/ukbench00015.jpg"), photo("gallery/Granny-Smith/train-002.jpg")])
    hits = [[Hit(8, "Granny-Smith", None, 0.50), Hit(7, "ukb-brio-box", None, 0.45), Hit(9, "no-keypoints", None, 0.4)]]
    weight = InlierWeight(floor=5.0, weight=0.05)
    region = photo("query_known/ukb-brio-box/ukbench00014.jpg")
    (rescored,) = verifier.rescore([region], hits, weight, score_thres=0.45)
    assert [hit.id for hit in rescored] == [7, 8, 9]
    assert rescored[0].score > 0.45 + weight.bonus(40)
    assert rescored[1].score == 0.50 and rescored[2].score == 0.4  # no inliers, no keypoints: as searched


def test_regions_whose_decision_verifying_cannot_change_are_not_verified():
    side = MemorySide()
    verifier = Verifier(side)
    hits = [[Hit(1, "a", None, 0.1)]]
    weight = InlierWeight(floor=5.0, weight=0.01)  # at most 0.01 * log(1 + 295): 0.057
    assert verifier.rescore([np.zeros((8, 8, 3), np.uint8)], hits, weight, score_thres=0.2) == hits
    assert side.gets == 0
    assert verifier.rescore([np.zeros((8, 8, 3), np.uint8)], hits, NO_WEIGHT, score_thres=0.0) == hits
    settled = [[Hit(1, "a", None, 0.9), Hit(2, "a", None, 0.85), Hit(3, "b", None, 0.5)]]  # b: 0.557 at most
    assert verifier.rescore([np.zeros((8, 8, 3), np.uint8)], settled, weight, score_thres=0.4) == settled
    assert side.gets == 0


def test_kept_features_are_read_once_then_cached():
    side = MemorySide()
    verifier = Verifier(side)
    verifier.keep([3], [photo("gallery/ukb-brio-box/ukbench00015.jpg")])
    first, again = verifier.kept([3, 4]), verifier.kept([3])
    assert set(first) == {3} and again[3] is first[3] and side.gets == 1
    assert verifier.kept([4]) == {} and side.gets == 2  # none kept for 4: asked again (it may come)


def test_gallery_pairs_are_verified_once_per_process():
    side = MemorySide()
    verifier = Verifier(side)
    verifier.keep([1, 2], [photo("gallery/ukb-brio-box/ukbench00015.jpg"), photo("gallery/ukb-brio-box/ukbench00013.jpg")])
    pairs = Pairs(genuine=np.zeros((1, 3)), confuser=np.zeros((1, 3)), impostor=np.zeros((1, 3)),
                  genuine_ids=np.array([[1, 2, -1]]), impostor_ids=np.array([[2, 3]]), impostor_folds=np.zeros(1),
                  labels=5, items=3)
    genuine, confuser, impostor = verifier_module.pair_inliers(verifier, pairs)
    assert genuine[0] > 20 and np.isnan(confuser[0]) and np.isnan(impostor[0])  # no candidate; 3 has no keypoints
    verifier._cache.clear()
    gets = side.gets
    assert verifier_module.pair_inliers(verifier, pairs)[0][0] == genuine[0] and side.gets == gets + 1  # (2, 3) only: 3 may get keypoints


def synthetic_pairs(rng, n=60, m=120):
    """Genuine pairs score higher and have many inliers; impostors lower with few; some overlap."""
    genuine = np.column_stack([rng.normal(0.55, 0.08, n), rng.normal(0.2, 0.05, n), rng.normal(0.3, 0.05, n)])
    impostor = np.column_stack([rng.normal(0.40, 0.08, m), rng.normal(0.2, 0.05, m), rng.normal(0.3, 0.05, m)])
    confuser = impostor[:n] - 0.05
    pairs = Pairs(genuine=genuine, confuser=confuser, impostor=impostor,
                  genuine_ids=np.zeros((n, 3), np.int64), impostor_ids=np.zeros((m, 2), np.int64),
                  impostor_folds=np.arange(m) % 2, labels=40, items=120)
    inliers = (rng.poisson(40, n).astype(float), rng.poisson(3, n).astype(float), rng.poisson(3, m).astype(float))
    return pairs, inliers


def test_the_weight_is_the_fitted_scorer_s_in_score_units_and_the_threshold_on_verified_scores():
    rng = np.random.default_rng(0)
    pairs, inliers = synthetic_pairs(rng)
    weight, decision = fit_inlier_weight(pairs, inliers, 0.05)
    wrong = np.concatenate([inliers[1], inliers[2]])
    assert weight.weight > 0 and weight.floor == max(6, np.quantile(wrong, verifier_module.FLOOR_QUANTILE))
    evidence = np.vectorize(weight.evidence)
    (_, on_score, on_evidence), _, (score_scale, evidence_scale) = fit_logistic(
        np.column_stack([pairs.genuine[:, 0], evidence(inliers[0])]),
        np.column_stack([pairs.impostor[:, 0], evidence(inliers[2])]))
    assert np.isclose(weight.weight, on_evidence / evidence_scale / (on_score / score_scale))
    impostor_verified = pairs.impostor[:, 0] + weight.weight * evidence(inliers[2])
    assert np.mean(impostor_verified >= decision.threshold) <= 0.05
    plain = fit_decision(pairs.genuine[:, :1], pairs.impostor[:, :1], 0.05, confuser_rows=pairs.confuser[:, :1])
    assert decision.estimated_known_right > plain.estimated_known_right  # the inliers told genuine pairs apart


def test_inliers_that_do_not_help_leave_the_one_column_decision():
    rng = np.random.default_rng(1)
    pairs, _ = synthetic_pairs(rng)
    same = (rng.poisson(3, 60).astype(float), rng.poisson(3, 60).astype(float), rng.poisson(3, 120).astype(float))
    flipped = (same[0], same[1], same[2] + 50)  # impostors verify better: no positive weight
    weight, decision = fit_inlier_weight(pairs, flipped, 0.05)
    assert weight == NO_WEIGHT
    assert decision.threshold == fit_decision(pairs.genuine[:, :1], pairs.impostor[:, :1], 0.05).threshold


def test_verification_needs_a_gallery_that_calibrates_itself():
    assert load_recognition_settings({"verification": "local_features"}).verification == "local_features"
    assert load_recognition_settings({}).verification is None
    with pytest.raises(ParamsError, match="rec_system.verification: local_features .* needs target_false_accept"):
        load_recognition_settings({"verification": "local_features", "score_thres": 0.4})
