"""One contract, both backends: a gallery opened from its settings (open_gallery, create_gallery,
gallery_exists) answers the same calls with the same results, and refuses the same bad calls with
the same errors, whether index_backend is faiss or milvus (the Milvus server of $CLAS_MILVUS_URI,
or one started for the session)."""
import uuid

import numpy as np
import pytest

from clas_system.errors import GalleryError, GalleryInputError, GalleryUnavailable, wire_code
from clas_system.gallery import Gallery, create_gallery, gallery_exists, open_gallery
from params.recognition import load_recognition_settings

DIM = 16
FINGERPRINT = {"model": "contract", "resize": 224}
BACKENDS = ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)]


def unit_vectors(count, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=BACKENDS)
def settings(request, tmp_path):
    gallery = {"index_backend": request.param, "index_dir": str(tmp_path / "gallery"), "index_method": "Flat"}
    if request.param == "milvus":
        gallery["milvus"] = {"uri": request.getfixturevalue("milvus_uri"), "collection": f"c_{uuid.uuid4().hex[:12]}"}
    return load_recognition_settings({"detector": None, "gallery": gallery}).gallery


@pytest.fixture
def gallery(settings):
    with create_gallery(settings, DIM, FINGERPRINT) as created:
        yield created


def test_created_where_the_settings_say(settings):
    assert not gallery_exists(settings)
    with create_gallery(settings, DIM, FINGERPRINT) as created:
        assert isinstance(created, Gallery) and created.backend == settings.index_backend
    assert gallery_exists(settings)
    with open_gallery(settings, expected_fingerprint=FINGERPRINT) as reopened:
        assert reopened.count() == 0
    with pytest.raises(GalleryError, match=r"differs in model \(gallery: 'contract', expected: 'other'\)"):
        open_gallery(settings, expected_fingerprint={**FINGERPRINT, "model": "other"})


def test_add_search_remove_stats(gallery, settings):
    vectors = unit_vectors(20)
    labels = [f"商品 {i}" for i in range(20)]  # CJK and spaces survive
    docs = [f"doc {i}" if i % 2 else None for i in range(20)]
    ids = gallery.add(vectors, labels, docs)
    assert len(set(ids)) == 20
    hits = gallery.search(vectors[:3], k=4)
    assert [row[0].id for row in hits] == ids[:3]
    assert [(row[0].label, row[0].doc) for row in hits] == [("商品 0", None), ("商品 1", "doc 1"), ("商品 2", None)]
    assert all(row[0].score == pytest.approx(1.0, abs=1e-4) for row in hits)
    assert all([h.score for h in row] == sorted((h.score for h in row), reverse=True) for row in hits)
    assert gallery.remove(ids=[ids[0], 10 ** 15]) == 1
    assert gallery.remove(labels=["商品 1", "no such label"]) == 1
    assert gallery.remove(ids=[ids[0]]) == 0
    assert all(h.id not in ids[:2] for row in gallery.search(vectors, k=20) for h in row)
    stats = gallery.stats()
    assert (stats["count"], stats["dim"], stats["metric"], stats["backend"]) == (18, DIM, "IP", settings.index_backend)
    assert stats["fingerprint"] == FINGERPRINT and "商品 0" not in stats["labels"] and stats["labels"]["商品 2"] == 1
    assert gallery.count() == 18
    assert sum(len(chunk[0]) for chunk in gallery.items(batch=7)) == 18
    gallery.save()
    with open_gallery(settings) as reopened:
        assert reopened.search(vectors[2:3], k=1)[0][0].label == "商品 2"


def test_vectors_by_id_and_a_revision_that_moves_with_changes(gallery):
    vectors = unit_vectors(5, seed=3)
    before = gallery.revision()
    ids = gallery.add(vectors, [f"l{i}" for i in range(5)])
    after_add = gallery.revision()
    assert after_add != before
    got = gallery.vectors(np.array([ids[3], ids[0], 10 ** 15]))
    assert set(got) == {ids[3], ids[0]}
    np.testing.assert_allclose(got[ids[3]], vectors[3], atol=1e-6)
    assert gallery.revision() == after_add
    gallery.remove(ids=[ids[0]])
    assert gallery.revision() != after_add and ids[0] not in gallery.vectors(np.array([ids[0]]))


@pytest.mark.parametrize("call, field, index, message", [
    (lambda g: g.add(np.ones((1, 8)), ["a"]), "vectors", None, "dimension 8, the gallery expects 16"),
    (lambda g: g.add(unit_vectors(2), ["a"]), "labels", None, "2 vectors but 1 labels"),
    (lambda g: g.add(np.full((1, DIM), np.nan), ["a"]), "vectors", 0, "NaN"),
    (lambda g: g.add(unit_vectors(2), ["a", ""]), "labels", 1, r"labels\[1\] must be a non-empty string"),
    (lambda g: g.add(unit_vectors(1), ["a"], docs=[1]), "docs", 0, r"docs\[0\]"),
    (lambda g: g.search(unit_vectors(1), k=0), "k", None, "k must be a positive integer"),
    (lambda g: g.remove(), None, None, "ids=... or labels=..."),
    (lambda g: g.remove(ids=[1, "a"]), "ids", 1, "ids must be integers"),
])
def test_bad_calls_are_refused_the_same_way(gallery, call, field, index, message):
    with pytest.raises(GalleryInputError, match=message) as err:
        call(gallery)
    assert (err.value.field, err.value.index, wire_code(err.value)) == (field, index, "bad_request")


def test_a_closed_gallery_is_unavailable(settings):
    created = create_gallery(settings, DIM, FINGERPRINT)
    created.close()
    with pytest.raises(GalleryUnavailable, match="the gallery is closed") as err:
        created.count()
    assert wire_code(err.value) == "unavailable"


@pytest.mark.milvus
def test_milvus_refuses_a_label_it_cannot_keep_as_a_bad_request(milvus_uri, tmp_path):
    settings = load_recognition_settings({"detector": None, "gallery": {
        "index_backend": "milvus", "milvus": {"uri": milvus_uri, "collection": f"c_{uuid.uuid4().hex[:12]}"}}}).gallery
    with create_gallery(settings, DIM) as gallery:
        with pytest.raises(GalleryInputError, match=r"labels\[0\] is 70000 bytes") as err:
            gallery.add(unit_vectors(1), ["x" * 70_000])
        assert wire_code(err.value) == "bad_request" and gallery.count() == 0
