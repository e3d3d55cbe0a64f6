"""Curating a gallery on Milvus: list, relabel and the side store against a real Milvus Lite
server, then over HTTP with two servers on one collection."""
import base64
import uuid

import cv2
import numpy as np
import pytest

from clas_system import Client
from clas_system.gallery import GalleryError, MilvusSettings, create_milvus_gallery, open_milvus_gallery
from harness.payloads import image_path

DIM = 16
COCO = "misc/coco_000000570688.jpg"


def unit_vectors(count, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_list_relabel_and_side_store_on_milvus(milvus_uri):
    where = MilvusSettings(uri=milvus_uri, collection=f"c_{uuid.uuid4().hex[:12]}")
    with create_milvus_gallery(where, DIM) as gallery, open_milvus_gallery(where) as other:
        ids = gallery.add(unit_vectors(30), [f"品 {i % 3}" for i in range(30)],
                          [f"shelf {i}" if i % 2 else None for i in range(30)])
        items, total = other.list_items(limit=4)
        assert total == 30 and [item.id for item in items] == sorted(ids)[:4]
        assert items[1].label == "品 1" and items[1].doc == "shelf 1" and isinstance(items[0].added_at, float)
        items, total = other.list_items(offset=2, limit=3, label="品 1")
        assert total == 10 and [item.id for item in items] == [ids[7], ids[10], ids[13]]
        items, total = other.list_items(limit=100, text="shelf 2")
        assert total == 5 and [item.id for item in items] == [ids[i] for i in (21, 23, 25, 27, 29)]
        assert [item.id for item in other.list_items(limit=2, after=ids[27])[0]] == ids[28:]
        assert other.list_items(text="100%")[1] == 0  # like's wildcards are matched literally
        with pytest.raises(GalleryError, match="pass after=<the last id of the previous page>"):
            other.list_items(offset=16000, limit=1000)

        revision = gallery.revision()
        assert gallery.relabel("cola", ids=[ids[4], ids[5], 10 ** 15]) == 2
        assert gallery.revision() != revision
        assert gallery.relabel("cola", labels=["品 0"]) == 10
        assert [hits[0].label for hits in other.search(unit_vectors(30)[3:6], k=1)] == ["cola"] * 3
        assert [hits[0].id for hits in other.search(unit_vectors(30)[3:6], k=1)] == ids[3:6]  # ids kept
        assert other.stats()["labels"] == {"cola": 12, "品 1": 9, "品 2": 9}

        assert other.side.get("thumbnail", ids[:2]) == [None, None]  # no side collection yet
        gallery.side.put("thumbnail", ids[3:6], [b"three", b"four", None])
        gallery.side.put("review.entry", [ids[4]], [b"not an item"])
        assert other.side.get("thumbnail", [ids[5], ids[4], ids[3]]) == [None, b"four", b"three"]
        assert other.side.usage() == {"review.entry": {"count": 1, "bytes": 11},
                                      "thumbnail": {"count": 2, "bytes": 9}}
        assert other.remove(ids=[ids[4]]) == 1
        assert gallery.side.get("thumbnail", ids[3:5]) == [b"three", None]
        assert gallery.side.get("review.entry", [ids[4]]) == [b"not an item"]
        assert gallery.side.ids("thumbnail") == [ids[3]] and gallery.side.count("thumbnail") == 1
        gallery.drop()


def test_curation_over_http_on_milvus_with_two_servers(server_factory, milvus_uri):
    collection = f"rec_{uuid.uuid4().hex[:12]}"
    modules = {"rec_system": {"index_backend": "milvus", "milvus": {"uri": milvus_uri, "collection": collection},
                              "cpu_threads": 1}}
    first = Client(server_factory(modules=modules).url)
    second = Client(server_factory(modules=modules).url)
    ids = first.gallery("add", images=[image_path(COCO), image_path("drink/nongfu_spring.jpeg")],
                        labels=["street", "drink"])["ids"]
    listed = second.gallery("list", label="drink")
    assert listed["total"] == 1 and listed["items"][0]["id"] == ids[1]
    [thumbnail] = second.gallery("thumbnail", ids=[ids[0]])["thumbnails"]
    image = cv2.imdecode(np.frombuffer(base64.b64decode(thumbnail), np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == 128
    assert second.gallery("relabel", labels=["street"], label="街景")["relabelled"] == 1
    assert first.recognize(image_path(COCO))[0][0]["rec_docs"] == "街景"
    assert first.gallery("remove", ids=[ids[0]])["removed"] == 1
    assert second.gallery("thumbnail", ids=[ids[0]])["thumbnails"] == [None]


def test_review_queue_on_milvus(milvus_uri):
    from clas_system.gallery import Hit
    from clas_system.gallery.review import ReviewQueue
    from params.gallery import CurationSettings
    where = MilvusSettings(uri=milvus_uri, collection=f"c_{uuid.uuid4().hex[:12]}")
    with create_milvus_gallery(where, DIM) as gallery, open_milvus_gallery(where) as other:
        queue = ReviewQueue(gallery, CurationSettings(review_max=2))
        keys = [queue.offer(np.full((50, 80, 3), 30 * i, np.uint8), Hit(1, "a", None, 0.2)) for i in range(3)]
        entries, total = ReviewQueue(other, CurationSettings(review_max=2)).entries()
        assert total == 2 and [e.id for e in entries] == keys[:0:-1] and entries[0].candidate["label"] == "a"
        assert queue.region(keys[2])[:2] == b"\xff\xd8"
        assert queue.dismiss(keys) == 2 and queue.entries()[1] == 0
        gallery.drop()
