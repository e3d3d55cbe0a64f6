"""The review queue: regions the recognizer rejected, kept so a person can enrol or dismiss them
(opt-in: gallery.curation.review_max > 0).

    queue = ReviewQueue(gallery, curation)
    queue.offer(crop, best_hit)          # a rejected region (RGB array) and its best hit (or None)
    queue.entries(offset, limit)         # ([Entry], total), newest first
    queue.region(entry_id)               # the kept region's JPEG, for enrolling it
    queue.dismiss(entry_ids)             # -> how many went

Entries live in the gallery's side store, so every worker and replica shares one queue, and it
survives restarts: kind "review.entry" (JSON: the best candidate's id, label and score),
"review.thumbnail" and "review.region" (JPEGs as kept_images makes them). An entry's id is its
time in milliseconds shifted left 11 bits plus 11 random bits: ids sort by time, two entries
kept in the same millisecond collide once in 2048, and ids stay below 2**53 (exact as JSON
numbers in a browser) until the year 2109. The queue holds at most review_max entries (the oldest go
first) and none older than review_retention_h.
"""
import json
import random
import time
from typing import NamedTuple, Optional

from ..errors import GalleryInputError
from .kept_images import THUMBNAIL_SIDE, jpeg_within

ENTRY, THUMB, REGION = "review.entry", "review.thumbnail", "review.region"
KINDS = (ENTRY, THUMB, REGION)
MAX_PAGE = 200


class Entry(NamedTuple):
    id: int
    at: float  # seconds since the epoch
    candidate: Optional[dict]  # the best gallery hit: {"id", "label", "score"}, or None (empty gallery)
    thumbnail: Optional[bytes]


ID_BITS = 11


def entry_id(seconds):
    return (int(seconds * 1000) << ID_BITS) | random.getrandbits(ID_BITS)


def entry_time(key):
    return (key >> ID_BITS) / 1000


class ReviewQueue:
    def __init__(self, gallery, curation, clock=time.time):
        self.gallery = gallery
        self.curation = curation
        self.clock = clock

    @property
    def enabled(self):
        return self.curation.review_max > 0

    def offer(self, crop, hit):
        """Keep a rejected region (RGB array) with its best hit (a gallery Hit, or None)."""
        if not self.enabled:
            return None
        now = self.clock()
        key = entry_id(now)
        candidate = None if hit is None else {"id": hit.id, "label": hit.label, "score": round(float(hit.score), 5)}
        side = self.gallery.side
        side.put(REGION, [key], [jpeg_within(crop, self.curation.region_side)])
        side.put(THUMB, [key], [jpeg_within(crop, THUMBNAIL_SIDE)])
        side.put(ENTRY, [key], [json.dumps({"candidate": candidate}).encode()])  # last: an entry is complete
        self._trim(now)
        return key

    def entries(self, offset=0, limit=50):
        """([Entry], total): newest first."""
        self._trim(self.clock())
        side = self.gallery.side
        total = side.count(ENTRY)
        start = max(0, total - offset - limit)  # the store pages oldest first
        keys = side.ids(ENTRY, start, max(0, total - offset - start))[::-1]
        records = side.get(ENTRY, keys)
        thumbnails = side.get(THUMB, keys)
        return [Entry(key, entry_time(key), json.loads(record)["candidate"], thumbnail)
                for key, record, thumbnail in zip(keys, records, thumbnails) if record is not None], total

    def region(self, key):
        """The kept region's JPEG of an entry; GalleryInputError naming it when there is none."""
        [region] = self.gallery.side.get(REGION, [key])
        if region is None:
            raise GalleryInputError(f"review entry {key} is not in the queue (enrolled, dismissed or expired)", "id")
        return region

    def dismiss(self, keys):
        dismissed = self.gallery.side.delete(keys, kinds=[ENTRY])
        self.gallery.side.delete(keys, kinds=[THUMB, REGION])
        return dismissed

    def _trim(self, now):
        """Drop entries past the retention and the oldest beyond review_max."""
        side = self.gallery.side
        cutoff = entry_id(now - self.curation.review_retention_h * 3600) >> ID_BITS
        stale = [key for key in side.ids(ENTRY, 0, 1000) if key >> ID_BITS < cutoff]
        excess = side.count(ENTRY) - len(stale) - self.curation.review_max
        if excess > 0:
            stale += side.ids(ENTRY, len(stale), excess)
        if stale:
            side.delete(stale, kinds=KINDS)
