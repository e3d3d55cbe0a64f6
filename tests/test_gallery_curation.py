"""Curating a gallery: list, relabel, the side store (thumbnails, kept regions), on the faiss
backend directly, then over HTTP with 2 workers and across kill -9."""
import base64
import signal

import cv2
import numpy as np
import pytest
from conftest import launch, wait_ready

from clas_system import Client
from clas_system.client.errors import BadRequestError
from clas_system.gallery import GalleryError, MAX_BLOB_BYTES, create_faiss_gallery, open_faiss_gallery
from harness.payloads import image_path

DIM = 16
COCO = "misc/coco_000000570688.jpg"


def unit_vectors(count, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def gallery(tmp_path):
    with create_faiss_gallery(tmp_path / "g", DIM, method="HNSW32") as gallery:
        gallery.add(unit_vectors(30), [f"品 {i % 3}" for i in range(30)], [f"shelf {i}" if i % 2 else None
                                                                          for i in range(30)])
        yield gallery


def test_list_pages_in_id_order_filtered_by_label_and_text(gallery):
    items, total = gallery.list_items(offset=0, limit=4)
    assert total == 30 and [item.id for item in items] == [0, 1, 2, 3]
    assert items[1].label == "品 1" and items[1].doc == "shelf 1" and items[0].doc is None
    assert all(isinstance(item.added_at, float) for item in items)
    items, total = gallery.list_items(offset=2, limit=3, label="品 1")
    assert total == 10 and [item.id for item in items] == [7, 10, 13]
    items, total = gallery.list_items(limit=100, text="shelf 2")  # shelf 2, 21, 23, ... (odd only)
    assert total == 5 and [item.id for item in items] == [21, 23, 25, 27, 29]
    items, total = gallery.list_items(limit=2, after=27)
    assert total == 30 and [item.id for item in items] == [28, 29]
    gallery.remove(ids=[0, 1])
    assert gallery.list_items(limit=1)[0][0].id == 2 and gallery.list_items()[1] == 28


def test_list_refuses_bad_arguments_naming_them(gallery):
    with pytest.raises(GalleryError, match="limit must be at most 1000, got 1001"):
        gallery.list_items(limit=1001)
    with pytest.raises(GalleryError, match="offset must be a whole number >= 0, got -1"):
        gallery.list_items(offset=-1)
    with pytest.raises(GalleryError, match="label must be a non-empty string or None"):
        gallery.list_items(label="")


def test_relabel_is_searched_logged_and_seen_by_other_processes(gallery, tmp_path):
    other = open_faiss_gallery(tmp_path / "g", read_only=True)
    revision = gallery.revision()
    assert gallery.relabel("cola", ids=[4, 5, 999]) == 2
    assert gallery.revision() != revision  # caches keyed by revision (crowding) are dropped
    assert gallery.relabel("cola", labels=["品 0"]) == 10
    assert [hits[0].label for hits in other.search(unit_vectors(30)[3:6], k=1)] == ["cola", "cola", "cola"]
    assert other.stats()["labels"] == {"cola": 12, "品 1": 9, "品 2": 9}
    with pytest.raises(GalleryError, match="relabel needs ids"):
        gallery.relabel("x")
    other.close()
    gallery.close()
    with open_faiss_gallery(tmp_path / "g") as reopened:  # the log replayed, then a snapshot
        assert reopened.stats()["labels"]["cola"] == 12
        reopened.save()
    with open_faiss_gallery(tmp_path / "g") as reopened:
        assert reopened.list_items(label="cola", limit=1)[0][0].id == 0


def test_side_store_keeps_named_blobs_per_item_and_drops_them_with_it(gallery, tmp_path):
    gallery.side.put("thumbnail", [3, 4, 5], [b"three", b"four", None])
    gallery.side.put("keypoints", [4], [b"\x00\x01"])
    gallery.side.put("review.entry", [4], [b"not an item"])
    other = open_faiss_gallery(tmp_path / "g", read_only=True)
    assert other.side.get("thumbnail", [5, 4, 3]) == [None, b"four", b"three"]
    assert other.side.usage() == {"keypoints": {"count": 1, "bytes": 2}, "review.entry": {"count": 1, "bytes": 11},
                                  "thumbnail": {"count": 2, "bytes": 9}}
    assert gallery.remove(ids=[4]) == 1
    assert other.side.get("thumbnail", [3, 4]) == [b"three", None] and other.side.get("keypoints", [4]) == [None]
    assert other.side.get("review.entry", [4]) == [b"not an item"]  # review entries are no items
    assert gallery.side.ids("thumbnail") == [3] and gallery.side.count("thumbnail") == 1
    with pytest.raises(GalleryError, match=f"blobs\\[0\\] is {MAX_BLOB_BYTES + 1} bytes; at most {MAX_BLOB_BYTES}"):
        gallery.side.put("thumbnail", [3], [b"x" * (MAX_BLOB_BYTES + 1)])
    with pytest.raises(GalleryError, match="kind 'Thumb nail'"):
        gallery.side.get("Thumb nail", [3])
    with pytest.raises(GalleryError, match="opened read_only"):
        other.side.put("thumbnail", [3], [b"x"])
    other.close()


# --- over HTTP, 2 workers, kill -9 ------------------------------------------------------------------

def rec_modules(index_dir, **curation):
    return {"rec_system": {"index_dir": str(index_dir), "index_method": "Flat", "cpu_threads": 1,
                           **({"curation": curation} if curation else {})}}


def decoded_jpeg(text):
    image = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_list_thumbnail_relabel_over_http_with_two_workers_and_after_kill_9(hub_home, tmp_path):
    modules = rec_modules(tmp_path / "gallery")
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules, use_multiprocess=True, workers=2))
    client = Client(server.url)
    ids = client.gallery("add", images=[image_path(COCO), image_path("drink/nongfu_spring.jpeg")],
                         labels=["street", "drink"], docs=["first", None])["ids"]
    listed = client.gallery("list", limit=10)
    assert listed["total"] == 2 and [(item["id"], item["label"], item["doc"]) for item in listed["items"]] == \
        [(ids[0], "street", "first"), (ids[1], "drink", None)]
    assert client.gallery("list", query="firs")["items"][0]["id"] == ids[0]
    thumbnails = client.gallery("thumbnail", ids=ids + [10 ** 9])["thumbnails"]
    assert thumbnails[2] is None and max(decoded_jpeg(thumbnails[0]).shape[:2]) == 128
    assert client.gallery("relabel", ids=[ids[0]], label="街景")["relabelled"] == 1
    for _ in range(6):  # whichever worker answers
        assert client.recognize(image_path(COCO))[0][0]["rec_docs"] == "街景"
    with pytest.raises(BadRequestError, match="limit: 5000 is over the maximum of 1000"):
        client.gallery("list", limit=5000)
    with pytest.raises(BadRequestError, match="ids: 201 ids, over the limit of 200"):
        client.gallery("thumbnail", ids=list(range(201)))
    server.stop(signal.SIGKILL)
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules))
    try:
        client = Client(server.url)
        assert client.recognize(image_path(COCO))[0][0]["rec_docs"] == "街景"
        assert decoded_jpeg(client.gallery("thumbnail", ids=[ids[1]])["thumbnails"][0]).size
        assert client.gallery("remove", ids=[ids[0]])["removed"] == 1
        assert client.gallery("thumbnail", ids=[ids[0]])["thumbnails"] == [None]
    finally:
        server.stop()


def test_thumbnails_are_opt_out(server_factory, tmp_path):
    server = server_factory(modules=rec_modules(tmp_path / "gallery", keep_thumbnails=False, keep_regions=False))
    client = Client(server.url)
    [new_id] = client.gallery("add", images=[image_path(COCO)], labels=["street"])["ids"]
    assert client.gallery("thumbnail", ids=[new_id])["thumbnails"] == [None]
    with open_faiss_gallery(tmp_path / "gallery", read_only=True) as gallery:
        assert not {"thumbnail", "region"} & set(gallery.side.usage())


def test_cli_lists_relabels_and_writes_thumbnails(gallery, tmp_path, capsys):
    import json

    from clas_system.gallery_cli import main as gallery_main
    gallery.side.put("thumbnail", [2], [b"\xff\xd8 a jpeg"])
    where = ["--index-dir", str(tmp_path / "g")]
    assert gallery_main(["list", *where, "--label", "品 2", "--limit", "2"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 10 and [item["id"] for item in listed["items"]] == [2, 5]
    assert gallery_main(["relabel", *where, "--ids", "2", "5", "--label", "cola"]) == 0
    assert json.loads(capsys.readouterr().out) == {"relabelled": 2}
    assert gallery.list_items(label="cola")[1] == 2
    assert gallery_main(["thumbnail", *where, "--ids", "2", "3", "--out", str(tmp_path / "thumbs")]) == 0
    assert json.loads(capsys.readouterr().out)["without_thumbnail"] == [3]
    assert (tmp_path / "thumbs" / "2.jpg").read_bytes() == b"\xff\xd8 a jpeg"
    assert gallery_main(["list", *where, "--limit", "1001"]) == 1
    assert "limit must be at most 1000" in capsys.readouterr().err
