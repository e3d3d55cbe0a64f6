"""Keypoints kept on a Milvus gallery (its side collection) are read by another process's
verifier, and a removed item's go with it."""
import uuid

import numpy as np

from clas_system.gallery import MilvusSettings, create_milvus_gallery, open_milvus_gallery
from clas_system.ops.decode import decode_image
from clas_system.tasks.verifier import KIND, Verifier
from harness.payloads import SHARED_IMAGES

OPENSET = SHARED_IMAGES.parent / "openset"


def test_keypoints_on_milvus_are_shared_and_removed_with_the_item(milvus_uri):
    where = MilvusSettings(uri=milvus_uri, collection=f"v_{uuid.uuid4().hex[:12]}")
    photos = [decode_image((OPENSET / "gallery/ukb-brio-box" / name).read_bytes())
              for name in ("ukbench00013.jpg", "ukbench00015.jpg")]
    with create_milvus_gallery(where, 4) as gallery, open_milvus_gallery(where) as other:
        ids = gallery.add(np.eye(4, dtype=np.float32)[:2], ["box", "box"])
        Verifier(gallery.side).keep(ids, photos)
        query = Verifier(other.side)
        assert set(query.kept(ids)) == set(ids) and other.side.count(KIND) == 2
        assert (ids[0], ids[1]) in query.item_inliers([(ids[0], ids[1])])  # both read back whole
        gallery.remove(ids=[ids[0]])
        assert Verifier(other.side).kept(ids).keys() == {ids[1]}
