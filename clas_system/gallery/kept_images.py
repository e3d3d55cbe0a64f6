"""What a gallery keeps of each added image, in its side store (settings: gallery.curation):

    "thumbnail"  a JPEG whose longer side is THUMBNAIL_SIDE pixels, shown by `thumbnail` and /ui/
    "region"     a JPEG whose longer side is curation.region_side pixels, re-embedded by
                 `clas-gallery reembed` when the feature model changes

Both are made from the decoded RGB image the vector was computed from, never upscaled, and
re-encoded at a lower quality until they fit side_store.MAX_BLOB_BYTES.
"""
import cv2
import numpy as np

from .side_store import MAX_BLOB_BYTES

THUMBNAIL = "thumbnail"
REGION = "region"
THUMBNAIL_SIDE = 128
QUALITIES = (90, 80, 65, 50, 35)


def bgr_within(image, max_side):
    """An RGB uint8 array -> a BGR array (what cv2 encodes) whose longer side is at most max_side:
    resized first (INTER_AREA), then its channels reversed, small."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[:, :, ::-1])


def jpeg_within(image, max_side):
    """An RGB uint8 array -> JPEG bytes, longer side at most max_side, at most MAX_BLOB_BYTES."""
    return bgr_jpeg(bgr_within(image, max_side))


def bgr_jpeg(bgr):
    for quality in QUALITIES:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(data) <= MAX_BLOB_BYTES:
            return data.tobytes()
    return None  # not even the lowest quality fits: the item keeps no image of this kind


def keep_images(gallery, ids, images, curation):
    """Put each item's thumbnail and region (as curation says) into the gallery's side store; the
    thumbnail is made from the region-sized image (one resize of the full-size one)."""
    if not (curation.keep_thumbnails or curation.keep_regions):
        return
    regions = [bgr_within(image, max(curation.region_side, THUMBNAIL_SIDE)) for image in images]
    if curation.keep_regions:
        gallery.side.put(REGION, ids, [bgr_jpeg(region) for region in regions])
    if curation.keep_thumbnails:
        gallery.side.put(THUMBNAIL, ids, [bgr_jpeg(bgr_within(region[:, :, ::-1], THUMBNAIL_SIDE))
                                          for region in regions])


def decode_kept(data):
    """A kept JPEG -> RGB uint8 array."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])
