"""Self-calibration in process: the gallery scored against itself equals a brute-force
re-scoring of the same vectors (crowding recomputed without the held-out item or label), the
conformal threshold keeps its promise, a too-small gallery keeps the fallback, and the live
threshold follows the gallery's changes off the request path."""
import time

import numpy as np
import pytest

from clas_system.gallery import create_faiss_gallery
from clas_system.tasks import calibration
from clas_system.tasks.calibration import calibrate, gallery_pairs
from clas_system.tasks.crowding import FLOOR, NEIGHBOURS, RERANK_K, SEARCH_K, WEIGHT
from clas_system.tasks.decision import TooFewSamples, conformal_threshold, fit_decision
from clas_system.tasks.recalibration import LiveCalibration

DIM = 32


def clustered(labels, per_label, seed=0, spread=0.6, prefix="label"):
    """Unit vectors in `labels` clusters, siblings sharing a family direction."""
    rng = np.random.default_rng(seed)
    families = rng.normal(size=(max(1, labels // 3), DIM))
    vectors, names = [], []
    for label in range(labels):
        centre = families[label % len(families)] + 0.8 * rng.normal(size=DIM)
        for _ in range(per_label[label] if isinstance(per_label, list) else per_label):
            vectors.append(centre + spread * rng.normal(size=DIM))
            names.append(f"{prefix}{label:02d}")
    vectors = np.array(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), names


@pytest.fixture()
def gallery(tmp_path):
    vectors, labels = clustered(12, [3, 2, 3, 1, 3, 2, 3, 3, 2, 3, 1, 3])
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat") as gallery:
        gallery.add(vectors, labels)
        yield gallery, vectors, labels


def brute_force_best(vectors, labels, query, removed, own_label):
    """The recognizer's best candidate of (own_label True) or without the query's label, the
    held-out items absent from the gallery and from every crowding."""
    keep = [i for i in range(len(vectors)) if i not in removed]
    similarity = vectors @ vectors[query]
    shortlist = sorted(keep, key=lambda i: -similarity[i])[:RERANK_K]
    scored = []
    for candidate in shortlist:
        own = vectors @ vectors[candidate]
        window = sorted(keep, key=lambda i: -own[i])[:SEARCH_K]
        others = [own[i] for i in window if labels[i] != labels[candidate]][:NEIGHBOURS]
        crowding = np.mean(others + [FLOOR] * (NEIGHBOURS - len(others)))
        scored.append((similarity[candidate] - WEIGHT * crowding, candidate))
    wanted = [(s, c) for s, c in sorted(scored, reverse=True) if (labels[c] == labels[query]) == own_label]
    return wanted[0] if wanted else (np.nan, -1)


def test_the_gallery_against_itself_is_the_recognizers_scoring_without_the_held_out(gallery):
    gallery, vectors, labels = gallery
    pairs = gallery_pairs(gallery, WEIGHT)
    assert len(pairs.genuine) == sum(1 for label in labels if labels.count(label) >= 2)
    assert len(pairs.impostor) == len(vectors)  # every label held out, at most 3 photos each
    for (query, own, other), genuine_row, confuser_row in zip(pairs.genuine_ids, pairs.genuine, pairs.confuser):
        score, candidate = brute_force_best(vectors, labels, query, {query}, own_label=True)
        assert candidate == own and genuine_row[0] == pytest.approx(score, abs=1e-5)
        score, candidate = brute_force_best(vectors, labels, query, {query}, own_label=False)
        assert candidate == other and confuser_row[0] == pytest.approx(score, abs=1e-5)
    for (query, best), row in zip(pairs.impostor_ids, pairs.impostor):
        removed = {i for i in range(len(labels)) if labels[i] == labels[query]}
        score, candidate = brute_force_best(vectors, labels, query, removed, own_label=False)
        assert candidate == best and row[0] == pytest.approx(score, abs=1e-5)
        assert row[0] == pytest.approx(row[1] - WEIGHT * row[2])


def test_the_conformal_threshold_keeps_its_promise_on_new_impostors():
    rng = np.random.default_rng(1)
    fitted, fresh = [], []
    for _ in range(400):
        threshold, estimate = conformal_threshold(rng.normal(size=40), 0.1)
        fitted.append(estimate)
        fresh.append(np.mean(rng.normal(size=2000) >= threshold))
    assert np.mean(fitted) <= 0.1
    assert abs(np.mean(fresh) - np.mean(fitted)) < 0.01  # the estimate is what new samples get
    with pytest.raises(TooFewSamples, match="needs at least 19"):
        conformal_threshold(rng.normal(size=18), 0.05)


def test_a_decision_reports_its_known_rates_and_fits_wider_rows():
    rng = np.random.default_rng(2)
    genuine = np.column_stack([rng.normal(1.0, 0.3, 200), rng.normal(30, 10, 200)])
    impostor = np.column_stack([rng.normal(0.0, 0.3, 200), rng.normal(5, 5, 200)])
    confuser = np.column_stack([rng.normal(-0.5, 0.3, 200), rng.normal(5, 5, 200)])
    one = fit_decision(genuine[:, :1], impostor[:, :1], 0.05, confuser_rows=confuser[:, :1])
    assert np.mean(one.accepts(impostor[:, :1])) <= 0.06
    assert one.estimated_known_right == pytest.approx(np.mean(genuine[:, 0] >= one.threshold))
    both = fit_decision(genuine, impostor, 0.05, confuser_rows=confuser)
    assert both.weights is not None and both.estimated_known_right > one.estimated_known_right
    assert np.mean(both.accepts(impostor)) <= 0.08


def test_a_gallery_too_small_to_say_keeps_the_fallback(tmp_path):
    vectors, labels = clustered(4, 3)
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat") as gallery:
        gallery.add(vectors, labels)
        small = calibrate(gallery, 0.05, WEIGHT, fallback=0.435)
        assert (small.score_thres, small.calibrated) == (0.435, False)
        assert "4 labels" in small.reason
        gallery.add(*clustered(8, 1, seed=3, prefix="other"))  # 12 labels, 20 impostors
        assert "20 impostor samples; a false-accept rate of 0.02 needs at least 49" in \
            calibrate(gallery, 0.02, WEIGHT, fallback=0.435).reason
        assert calibrate(gallery, 0.05, WEIGHT, fallback=0.435).calibrated


def test_the_sample_is_bounded_and_the_same_each_time(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "MAX_GENUINE_QUERIES", 10)
    monkeypatch.setattr(calibration, "MAX_IMPOSTOR_LABELS", 8)
    vectors, labels = clustered(30, 3)
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat") as gallery:
        gallery.add(vectors, labels)
        first, second = gallery_pairs(gallery, WEIGHT), gallery_pairs(gallery, WEIGHT)
    assert len(first.genuine) == 10 and len(first.impostor) == 8 * 3
    assert len({labels[i] for i in first.genuine_ids[:, 0]}) == 10  # one photo of each of ten labels
    assert np.array_equal(first.genuine_ids, second.genuine_ids)
    assert np.array_equal(first.impostor, second.impostor)


def test_the_live_threshold_is_the_fallback_until_worked_out_then_follows_changes(tmp_path, monkeypatch):
    monkeypatch.setattr("clas_system.tasks.recalibration.MIN_INTERVAL_S", 0.0)
    vectors, labels = clustered(12, 3)
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat") as gallery:
        gallery.add(vectors, labels)
        live = LiveCalibration(gallery, 0.05, WEIGHT, fallback=0.435)
        assert live.score_thres() == 0.435 and live.state()["reason"] == "calibrating"
        first = wait_for(lambda: live.latest())
        assert first.calibrated and live.score_thres() == first.score_thres != 0.435
        assert live.score_thres() == calibrate(gallery, 0.05, WEIGHT, 0.435).score_thres
        gallery.remove(labels=sorted(set(labels))[:8])
        after = wait_for(lambda: live.latest() if live.latest() is not first else None)
        assert (after.calibrated, after.labels, live.score_thres()) == (False, 4, 0.435)


def wait_for(probe, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")
