"""tasks.verification on real photos: a product verifies against its own gallery photo with many
inliers and against another product with none; what the side store keeps round-trips."""
import numpy as np
import pytest

from clas_system.gallery import MAX_BLOB_BYTES
from clas_system.ops.decode import decode_image
from clas_system.tasks import verification
from harness.payloads import SHARED_IMAGES, image_bytes

OPENSET = SHARED_IMAGES.parent / "openset"


def kept(path):
    return verification.extract(decode_image(path.read_bytes()))


@pytest.fixture(scope="module")
def brio_box():
    return kept(OPENSET / "query_known/ukb-brio-box/ukbench00014.jpg")


def test_an_object_verifies_against_its_own_gallery_photo_and_not_others(brio_box):
    own = verification.verify(brio_box, kept(OPENSET / "gallery/ukb-brio-box/ukbench00015.jpg"))
    other_object = verification.verify(brio_box, kept(OPENSET / "gallery/ukb-muna-book/ukbench00017.jpg"))
    produce = verification.verify(brio_box, kept(OPENSET / "gallery/Granny-Smith/train-002.jpg"))
    assert own.inliers >= 40, own
    assert other_object.inliers <= 6 and produce.inliers <= 6, (other_object, produce)


def test_a_product_carton_verifies_against_its_gallery_photo_and_not_another_product():
    carton = verification.extract(decode_image(image_bytes("product/query/anmuxi.jpg")))
    cake = verification.extract(decode_image(image_bytes("product/query/daoxiangcunjinzhubing_6.jpg")))
    gallery_photo = verification.extract(decode_image(image_bytes("product/gallery/anmuxi/004.jpg")))
    assert verification.verify(carton, gallery_photo).inliers >= 12
    assert verification.verify(cake, gallery_photo).inliers == 0


def test_features_are_bounded_and_round_trip_through_bytes(brio_box):
    assert 0 < len(brio_box.points) <= verification.MAX_KEYPOINTS
    assert brio_box.points.dtype == np.float16 and brio_box.descriptors.dtype == np.uint8
    assert brio_box.points.max() <= verification.MAX_SIDE
    blob = verification.to_bytes(brio_box)
    assert len(blob) == 5 + brio_box.nbytes <= 5 + verification.MAX_KEYPOINTS * (4 + 128)
    back = verification.from_bytes(blob)
    assert np.array_equal(back.points, brio_box.points) and np.array_equal(back.descriptors, brio_box.descriptors)


def test_bytes_that_are_not_local_features_are_refused():
    with pytest.raises(ValueError, match="not local features"):
        verification.from_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    with pytest.raises(ValueError, match="should be"):
        verification.from_bytes(verification.to_bytes(verification.NO_FEATURES) + b"x")


def test_a_blank_region_has_no_features_and_verifies_nothing(brio_box):
    blank = verification.extract(np.full((100, 80, 3), 128, np.uint8))
    assert len(blank.points) == 0
    assert verification.verify(blank, brio_box) == verification.Verified(0, 0)
    assert verification.verify(brio_box, blank).inliers == 0


def test_an_item_s_features_fit_one_side_store_blob_on_faiss_and_milvus():
    largest = len(verification.to_bytes(verification.LocalFeatures(
        np.zeros((verification.MAX_KEYPOINTS, 2), np.float16),
        np.zeros((verification.MAX_KEYPOINTS, verification.DESCRIPTOR_SIZE), np.uint8))))
    assert largest == 5 + verification.MAX_KEYPOINTS * (4 + verification.DESCRIPTOR_SIZE) <= MAX_BLOB_BYTES
