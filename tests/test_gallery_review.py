"""The review queue of unknowns: bounded, expiring, shared through the side store; over HTTP with
2 workers, an unknown region is kept, enrolled under a label in one request and recognised on
the next, in every worker and after kill -9."""
import signal

import numpy as np
import pytest
from conftest import launch, wait_ready

from clas_system import Client
from clas_system.client.errors import BadRequestError
from clas_system.gallery import Hit, create_faiss_gallery, open_faiss_gallery
from clas_system.gallery.review import ReviewQueue
from harness.payloads import image_path
from params.gallery import CurationSettings

COCO = "misc/coco_000000570688.jpg"
UNKNOWN = "imagenet/ILSVRC2012_val_00006666.JPEG"


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def test_queue_is_bounded_expires_and_is_shared(tmp_path):
    clock = Clock()
    curation = CurationSettings(review_max=3, review_retention_h=1.0)
    crop = np.full((400, 200, 3), 90, np.uint8)
    with create_faiss_gallery(tmp_path / "g", 4) as gallery:
        queue = ReviewQueue(gallery, curation, clock)
        keys = []
        for i in range(5):
            clock.now += 60
            keys.append(queue.offer(crop, Hit(7, "cola", None, 0.31 + i / 100) if i else None))
        with open_faiss_gallery(tmp_path / "g", read_only=True) as other:
            entries, total = ReviewQueue(other, curation, clock).entries(limit=10)
        assert total == 3 and [e.id for e in entries] == keys[:1:-1]  # the newest three, newest first
        assert entries[0].candidate == {"id": 7, "label": "cola", "score": 0.35} and entries[0].thumbnail[:2] == b"\xff\xd8"
        assert entries[0].at == pytest.approx(clock.now, abs=1e-3)
        assert [e.id for e in queue.entries(offset=1, limit=1)[0]] == [keys[3]]
        assert queue.dismiss([keys[4], 12345]) == 1 and queue.entries()[1] == 2
        clock.now += 3600 - 90  # keys[2] (3 min older than keys[4]) is past the hour, keys[3] is not
        assert [e.id for e in queue.entries()[0]] == [keys[3]]
        assert {kind: usage["count"] for kind, usage in gallery.side.usage().items()} == \
            {"review.entry": 1, "review.region": 1, "review.thumbnail": 1}
        with pytest.raises(Exception, match=f"review entry {keys[0]} is not in the queue"):
            queue.region(keys[0])


def test_unknowns_are_kept_enrolled_and_recognised_over_http(hub_home, tmp_path):
    modules = {"rec_system": {"index_dir": str(tmp_path / "gallery"), "index_method": "Flat", "cpu_threads": 1,
                              "detector": None, "curation": {"review_max": 10}}}
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules, use_multiprocess=True, workers=2))
    client = Client(server.url)
    [street] = client.gallery("add", images=[image_path(COCO)], labels=["street"])["ids"]
    assert client.recognize(image_path(UNKNOWN)) == [[]]
    review = client.gallery("review")
    assert review["enabled"] and review["total"] == 1
    [entry] = review["entries"]
    assert entry["candidate"]["id"] == street and entry["candidate"]["label"] == "street"
    assert entry["thumbnail"]
    [new_id] = client.gallery("enrol", id=entry["id"], label="parrot", doc="from review")["ids"]
    for _ in range(4):  # whichever worker answers
        assert client.recognize(image_path(UNKNOWN))[0][0]["rec_docs"] == "parrot"
    assert client.gallery("review")["total"] == 0
    assert client.gallery("thumbnail", ids=[new_id])["thumbnails"][0]
    with pytest.raises(BadRequestError, match="is not in the queue"):
        client.gallery("enrol", id=entry["id"], label="parrot")
    server.stop(signal.SIGKILL)
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules))
    try:
        client = Client(server.url)
        assert client.recognize(image_path(UNKNOWN))[0][0]["rec_docs"] == "parrot"
        client.gallery("remove", ids=[new_id])
        client.recognize(image_path(UNKNOWN))
        [entry] = client.gallery("review")["entries"]
        assert client.gallery("dismiss", ids=[entry["id"]]) == {"dismissed": 1, "elapse": pytest.approx(0, abs=5)}
    finally:
        server.stop()
