"""Crowding: how close a gallery item already is to other labels' items, taken off its hits'
scores (cross-domain similarity local scaling, gallery side).

An item photographed among look-alikes (five apple varieties) sits close to items of other
labels, and a photo of something the gallery does not hold scores high against it. Taking half
the item's mean similarity to its three nearest items of other labels off every hit on it asks
more of a match in a crowded neighbourhood than in a sparse one, so one threshold rejects
unknowns alike in both (measured on real open-set photos: docs/recognition.md).

    crowding = Crowding(gallery)
    crowding.rescore(hits_per_query)  # each query's hits re-scored, best first

An item's crowding depends on the whole gallery, so it is worked out when the item is first hit
(one gallery search with the item's own vector) and kept until the gallery changes; changes made
elsewhere (another server on the same Milvus) are picked up within CACHE_TTL_S.
"""
import threading
import time

import numpy as np


NEIGHBOURS = 3  # nearest items of other labels averaged
WEIGHT = 0.5  # share of the crowding taken off a hit's similarity
FLOOR = 0.5  # stands in for neighbours a small gallery does not have
SEARCH_K = 16  # how deep an item's own search looks for items of other labels
RERANK_K = 10  # hits per query re-scored: a crowded best hit may fall behind a sparse second
CACHE_TTL_S = 10.0
CACHE_MAX_ITEMS = 200_000


def crowding_of(label, own_hits):
    """Mean similarity of an item (with `label`) to its NEIGHBOURS nearest items of other labels,
    from the hits of a search with its own vector; FLOOR for each one missing."""
    others = [hit.score for hit in own_hits if hit.label != label][:NEIGHBOURS]
    return float(np.mean(others + [FLOOR] * (NEIGHBOURS - len(others))))


class Crowding:
    def __init__(self, gallery, clock=time.monotonic):
        self.gallery = gallery
        self.clock = clock
        self._lock = threading.Lock()
        self._values = {}  # item id -> crowding, valid for self._revision
        self._revision = None
        self._since = clock()

    def of_hits(self, hits):
        """Crowding of each distinct item among `hits`, by id."""
        revision = self.gallery.revision()
        with self._lock:
            if (revision != self._revision or self.clock() - self._since > CACHE_TTL_S
                    or len(self._values) > CACHE_MAX_ITEMS):
                self._values, self._revision, self._since = {}, revision, self.clock()
            known = dict(self._values)
        missing = {hit.id: hit.label for hit in hits if hit.id not in known}
        if missing:
            computed = self._compute(missing)
            known.update(computed)
            with self._lock:
                if self._revision == revision:
                    self._values.update(computed)
        return known

    def _compute(self, labels_by_id):
        vectors = self.gallery.vectors(list(labels_by_id))
        ids = [i for i in labels_by_id if i in vectors]  # an item removed since the query's search is skipped
        if not ids:
            return {}
        own_hits = self.gallery.search(np.stack([vectors[i] for i in ids]), SEARCH_K)
        return {i: crowding_of(labels_by_id[i], hits) for i, hits in zip(ids, own_hits)}

    def rescore(self, hits_per_query):
        """Each query's hits with WEIGHT x crowding taken off their scores, best first."""
        crowding = self.of_hits([hit for hits in hits_per_query for hit in hits])
        rescored = []
        for hits in hits_per_query:
            kept = [hit._replace(score=hit.score - WEIGHT * crowding[hit.id]) for hit in hits if hit.id in crowding]
            rescored.append(sorted(kept, key=lambda hit: -hit.score))
        return rescored
