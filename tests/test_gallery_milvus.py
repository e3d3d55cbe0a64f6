"""The milvus gallery backend against a real Milvus Lite standalone server: the faiss backend's
semantics, several processes on one collection, migration both ways, and rec_system served on it."""
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from clas_system import Client
from clas_system.gallery import (GalleryError, MilvusSettings, create_faiss_gallery, create_milvus_gallery,
                                 migrate_gallery, open_milvus_gallery)
from clas_system.gallery.migrate import migrate_between
from harness.payloads import SHARED_IMAGES, image_path

REPO = Path(__file__).resolve().parents[1]
DIM = 32
FINGERPRINT = {"model": "test", "resize": 224}


def unit_vectors(count, seed=0, dim=DIM):
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def settings(uri, **kwargs):
    return MilvusSettings(uri=uri, collection=f"t_{uuid.uuid4().hex[:12]}", **kwargs)


@pytest.mark.parametrize("metric", ["IP", "L2"])
def test_same_answers_as_faiss_flat(milvus_uri, tmp_path, metric):
    vectors, queries = unit_vectors(300), unit_vectors(20, seed=1)
    labels = [f"商品 {i}" for i in range(300)]  # CJK and spaces survive
    docs = [f"doc {i}" if i % 2 else None for i in range(300)]
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat", metric=metric) as faiss_gallery, \
            create_milvus_gallery(settings(milvus_uri), DIM, metric=metric) as milvus_gallery:
        faiss_gallery.add(vectors, labels, docs)
        ids = milvus_gallery.add(vectors, labels, docs)
        assert len(set(ids)) == 300
        for expected, got in zip(faiss_gallery.search(queries, k=5), milvus_gallery.search(queries, k=5)):
            assert [(h.label, h.doc) for h in got] == [(h.label, h.doc) for h in expected]
            assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-4)

        assert milvus_gallery.remove(ids=[ids[0], ids[1], 10 ** 15]) == 2
        assert milvus_gallery.remove(labels=["商品 2", "no such label"]) == 1
        assert milvus_gallery.remove(ids=[ids[0]]) == 0
        hits = milvus_gallery.search(vectors[:4], k=1)
        assert [h[0].label for h in hits[3:]] == ["商品 3"] and all(h[0].id not in ids[:3] for h in hits)
        stats = milvus_gallery.stats()
        assert stats["count"] == 297 and stats["labels"]["商品 3"] == 1 and "商品 0" not in stats["labels"]
        assert stats["backend"] == "milvus" and stats["dim"] == DIM and stats["metric"] == metric


def test_changes_are_seen_by_other_processes_on_their_next_call(milvus_uri):
    where = settings(milvus_uri)
    create_milvus_gallery(where, DIM, fingerprint=FINGERPRINT).close()
    child = ("import sys, numpy as np\n"
             "from clas_system.gallery import MilvusSettings, open_milvus_gallery\n"
             "gallery = open_milvus_gallery(MilvusSettings(uri=sys.argv[1], collection=sys.argv[2]))\n"
             "for line in sys.stdin:\n"
             "    op, seed = line.split()\n"
             "    vector = np.random.default_rng(int(seed)).standard_normal((1, 32))\n"
             "    vector /= np.linalg.norm(vector)\n"
             "    if op == 'add':\n"
             "        print(gallery.add(vector, [f'child {seed}'])[0], flush=True)\n"
             "    else:\n"
             "        print(gallery.search(vector, k=1)[0][0].label if gallery.count() else '-', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, where.uri, where.collection], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        with open_milvus_gallery(where, expected_fingerprint=FINGERPRINT) as gallery:
            for seed in range(3):
                proc.stdin.write(f"add {seed}\n")
                proc.stdin.flush()
                new_id = int(proc.stdout.readline())
                vector = np.random.default_rng(seed).standard_normal((1, DIM))
                vector /= np.linalg.norm(vector)
                assert gallery.search(vector, k=1)[0][0].id == new_id
                assert gallery.remove(ids=[new_id]) == 1
                proc.stdin.write(f"search {seed}\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "-"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_refusals_name_the_problem(milvus_uri):
    where = settings(milvus_uri)
    with pytest.raises(GalleryError, match="holds no gallery"):
        open_milvus_gallery(where)
    create_milvus_gallery(where, DIM, fingerprint=FINGERPRINT).close()
    with pytest.raises(GalleryError, match="already holds a gallery"):
        create_milvus_gallery(where, DIM)
    with pytest.raises(GalleryError, match=r"differs in model \(gallery: 'test', expected: 'other'\)"):
        open_milvus_gallery(where, expected_fingerprint={**FINGERPRINT, "model": "other"})
    with pytest.raises(GalleryError, match="'hamming' is not available with the milvus backend"):
        create_milvus_gallery(settings(milvus_uri), DIM, metric="hamming")
    with pytest.raises(GalleryError, match="collection 'bad-name'"):
        open_milvus_gallery(MilvusSettings(uri=milvus_uri, collection="bad-name"))
    with pytest.raises(GalleryError, match="cannot connect to Milvus at http://127.0.0.1:9"):
        open_milvus_gallery(MilvusSettings(uri="http://127.0.0.1:9", collection="x", timeout_s=1))
    with open_milvus_gallery(where) as gallery:
        with pytest.raises(GalleryError, match="dimension 8, the gallery expects 32"):
            gallery.add(unit_vectors(1, dim=8), ["a"])
        with pytest.raises(GalleryError, match="k must be at most 16384"):
            gallery.search(unit_vectors(1), k=20000)


def test_migrate_faiss_to_milvus_and_back(milvus_uri, tmp_path):
    vectors = unit_vectors(500)
    with create_faiss_gallery(tmp_path / "a", DIM, method="HNSW32", fingerprint=FINGERPRINT) as source:
        source.add(vectors, [f"品 {i % 200}" for i in range(500)], [f"d{i}" for i in range(500)])
        source.remove(labels=["品 7"])
        where = settings(milvus_uri)
        with create_milvus_gallery(where, DIM, fingerprint=FINGERPRINT) as middle:
            report = migrate_gallery(source, middle)
            assert report == {"copied": 497, "source_count": 497, "target_count": 497, "checked_queries": 200}
            with create_faiss_gallery(tmp_path / "b", DIM, method="Flat", fingerprint=FINGERPRINT) as back:
                assert migrate_gallery(middle, back)["target_count"] == 497
                assert back.stats()["labels"] == source.stats()["labels"]
            with create_faiss_gallery(tmp_path / "c", DIM, method="Flat", fingerprint={"model": "other"}) as other:
                with pytest.raises(GalleryError, match="different feature fingerprints"):
                    migrate_gallery(middle, other)
            with pytest.raises(GalleryError, match="already holds 497 items"):
                migrate_gallery(source, middle)


def test_migrate_between_refuses_and_cleans_up(milvus_uri, tmp_path):
    with create_faiss_gallery(tmp_path / "g", DIM, method="Flat", fingerprint=FINGERPRINT) as source:
        source.add(unit_vectors(50), [f"l{i}" for i in range(50)])
    where = settings(milvus_uri)
    report = migrate_between(tmp_path / "g", where, "milvus")
    assert report["target_count"] == 50 and report["to"].startswith(f"milvus gallery {where.collection}")
    report = migrate_between(tmp_path / "back", where, "faiss", index_method="Flat")
    assert report["target_count"] == 50 and report["from"].startswith("milvus gallery")
    with pytest.raises(GalleryError, match="already holds a gallery"):
        migrate_between(tmp_path / "back", where, "faiss")
    with pytest.raises(GalleryError, match="already holds a gallery"):
        migrate_between(tmp_path / "g", where, "milvus")
    with pytest.raises(GalleryError, match="choose faiss or milvus"):
        migrate_between(tmp_path / "g", where, "redis")


# --- rec_system served on Milvus ------------------------------------------------------------------

LIST_ENTRIES = [(f"drink/{p.name}", p.stem) for p in sorted((SHARED_IMAGES / "drink").iterdir())]
COCO = "misc/coco_000000570688.jpg"


def rec_on_milvus(uri, collection, **init_args):
    return {"rec_system": {"index_backend": "milvus", "milvus": {"uri": uri, "collection": collection},
                           "cpu_threads": 1, **init_args}}


def test_two_servers_on_one_milvus_see_each_others_changes(server_factory, milvus_uri, tmp_path):
    data_file = tmp_path / "list.txt"
    data_file.write_text("".join(f"{path}\t{label}\n" for path, label in LIST_ENTRIES))
    collection = f"rec_{uuid.uuid4().hex[:12]}"
    modules = rec_on_milvus(milvus_uri, collection, data_file=str(data_file), image_root=str(SHARED_IMAGES))
    first = Client(server_factory(modules=modules).url)
    second = Client(server_factory(modules=modules).url)  # finds the collection the first one built
    results = second.recognize([image_path(path) for path, _label in LIST_ENTRIES])
    assert [regions[0]["rec_docs"] for regions in results] == [label for _path, label in LIST_ENTRIES]
    assert second.gallery("stats")["stats"]["count"] == len(LIST_ENTRIES)

    ids = first.gallery("add", images=[image_path(COCO)], labels=["街景"], docs=["a street scene"])["ids"]
    hit = second.gallery("search", images=[image_path(COCO)], k=1)["hits"][0][0]
    assert hit == {"id": ids[0], "label": "街景", "doc": "a street scene", "score": pytest.approx(1.0, abs=1e-4)}
    assert second.recognize(image_path(COCO))[0][0]["rec_docs"] == "街景"
    assert second.gallery("remove", labels=["街景"])["removed"] == 1
    assert all(region["rec_docs"] != "街景" for region in first.recognize(image_path(COCO))[0])
    assert first.gallery("save")["stats"]["count"] == len(LIST_ENTRIES)


# --- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("gallery, message", [
    ({"index_backend": "milvus"}, "rec_system.gallery.milvus.uri: index_backend milvus needs the Milvus server's"),
    ({"index_backend": "milvus", "milvus": {"uri": "http://127.0.0.1:19530", "collection": "9x"}},
     "rec_system.gallery.milvus.collection: '9x'"),
    ({"index_backend": "milvus", "milvus": {"uri": "http://127.0.0.1:19530"}, "pq_size": 8},
     "rec_system.gallery.pq_size: a faiss setting"),
    ({"index_backend": "milvus", "milvus": {"uri": "http://127.0.0.1:19530", "consistency_level": "strong"}},
     "rec_system.gallery.milvus.consistency_level: 'strong' is not allowed"),
    ({"index_backend": "milvus", "milvus": {"url": "http://127.0.0.1:19530"}},
     "rec_system.gallery.milvus.url: unknown setting (did you mean 'uri'?)"),
    ({"index_backend": "milvus", "milvus": {"uri": "http://127.0.0.1:19530", "timeout_s": 2.5}},
     "rec_system.gallery.milvus.timeout_s: expected a whole number, got 2.5"),
    ({"index_backend": "redis"}, "rec_system.gallery.index_backend: 'redis' is not allowed"),
])
def test_bad_milvus_settings_name_the_key(gallery, message):
    from params import ParamsError
    from params.recognition import load_recognition_settings
    with pytest.raises(ParamsError) as err:
        load_recognition_settings({"gallery": gallery})
    assert message in str(err.value)


def test_flat_init_args_choose_the_backend_and_keep_the_predictor_backend_apart():
    from params.recognition import load_recognition_settings
    settings = load_recognition_settings({}, {"index_backend": "milvus", "backend": "onnxruntime",
                                              "milvus": {"uri": "http://127.0.0.1:19530", "collection": "products"}})
    assert settings.gallery.index_backend == "milvus" and settings.gallery.milvus.collection == "products"
    assert settings.feature.predictor.backend == "onnxruntime"
