"""A gallery that calibrates itself: its own photos, scored against the rest of it as the
recognizer scores a query, say where this gallery's threshold goes.

    pairs = gallery_pairs(gallery, weight=crowding.WEIGHT)  # the gallery scored against itself
    decision = fit_decision(pairs.genuine, pairs.impostor, 0.05, confuser_rows=pairs.confuser)
    decision.threshold, decision.estimated_false_accept, decision.accepts(rows)   # tasks.decision

    calibrate(gallery, target_false_accept=0.05, weight=crowding.WEIGHT, fallback=0.435)
    # -> Calibration: the threshold to use, and why (the gallery's own, or the fallback)

Two kinds of held-out query, each a gallery item searched in the gallery without something:

  leave one photo out   the item against the gallery without itself: its own label's best
                        candidate is what a known query looks like (a genuine row), the best
                        candidate of any other label what it may be confused with (a confuser row)
  leave one label out   the item against the gallery without its whole label: its best
                        candidate is what an unknown sibling looks like (an impostor row)

Each candidate is scored as Recognizer.search scores a hit: its similarity less `weight` times
its crowding (tasks.crowding), and that crowding is worked out again without the held-out
item or label, so a held-out item never crowds its own candidates. Queries are only those the
recognizer would rank: the best RERANK_K raw hits after the held-out items are dropped.

A row is one (query, candidate) pair: COLUMNS (score, similarity, crowding). Callers with more
to say about a pair (local-feature inliers, colour) add columns from the pair's ids
(HeldOut.candidates, Pairs.genuine_ids / impostor_ids) and fit on the wider rows.

The cost is bounded whatever the gallery's size: at most MAX_GENUINE_QUERIES photos and
MAX_IMPOSTOR_LABELS labels (MAX_QUERIES_PER_LABEL photos each) are held out, chosen by a hash of
their ids and labels (the same sample in every process), and everything is gallery searches of
SEARCH_CHUNK queries at a time (requests' searches go between them), alike on faiss and Milvus.
"""
import dataclasses
import zlib
from collections import defaultdict
from typing import Optional, Tuple

import numpy as np

from ..gallery.interface import MAX_LIST_LIMIT
from .crowding import RERANK_K, SEARCH_K, crowding_of
from .decision import Decision, TooFewSamples, fit_decision

COLUMNS = ("score", "similarity", "crowding")
MAX_GENUINE_QUERIES = 300
MAX_IMPOSTOR_LABELS = 150
MAX_QUERIES_PER_LABEL = 3
MAX_LABEL_ITEMS = 1000  # a label with more items than this is not held out whole (search depth)
SEARCH_CHUNK = 8  # queries per gallery search: requests' searches take turns with calibration's
MIN_LABELS = 5  # fewer labels: the gallery is too small to say; its fallback threshold is used


@dataclasses.dataclass(frozen=True)
class Candidate:
    id: int
    label: str
    similarity: float
    crowding: float
    score: float  # similarity - weight * crowding, what the recognizer ranks and thresholds

    @property
    def row(self):
        return (self.score, self.similarity, self.crowding)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """One gallery item searched without itself ("photo") or without its label ("label")."""
    query_id: int
    label: str
    kind: str  # "photo" or "label"
    candidates: Tuple[Candidate, ...]  # best score first

    def best(self, own_label):
        """The best candidate with (own_label True) or without the query's label, or None."""
        return next((c for c in self.candidates if (c.label == self.label) == own_label), None)


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Rows (COLUMNS) of the held-out queries' deciding pairs; a NaN row where there is none."""
    genuine: np.ndarray  # [n, 3] leave-one-photo-out: the own label's best candidate
    confuser: np.ndarray  # [n, 3] the same queries: the best candidate of another label
    impostor: np.ndarray  # [m, 3] leave-one-label-out: the best candidate
    genuine_ids: np.ndarray  # [n, 3] query id, own-label candidate id, other-label candidate id (-1: none)
    impostor_ids: np.ndarray  # [m, 2] query id, candidate id
    impostor_folds: np.ndarray  # [m] 0 or 1 by a hash of the held-out label (fit_decision's folds)
    labels: int  # labels in the gallery
    items: int  # items in the gallery
    columns: Tuple[str, ...] = COLUMNS


def stable_key(value):
    """An order that looks random but is the same in every process and run."""
    return zlib.crc32(str(value).encode()), str(value)


def catalogue(gallery, page=MAX_LIST_LIMIT):
    """{label: [ids, increasing]} of every item in the gallery (listed a page at a time, no vectors)."""
    by_label = defaultdict(list)
    after = None
    while True:
        items, _total = gallery.list_items(limit=page, after=after)
        for item in items:
            by_label[item.label].append(item.id)
        if len(items) < page:
            return {label: sorted(ids) for label, ids in by_label.items()}
        after = items[-1].id


def photo_queries(by_label, limit):
    """Items to leave out one at a time: of labels with two or more, spread over the labels (each
    label's first pick, then each one's second, ...), at most `limit`."""
    picks = []
    for label, ids in by_label.items():
        if len(ids) >= 2:
            picks += [(rank, stable_key(item_id), item_id) for rank, item_id in
                      enumerate(sorted(ids, key=stable_key))]
    return [item_id for _rank, _key, item_id in sorted(picks)[:limit]]


def label_queries(by_label, labels, per_label):
    """(label, items to search without it) for labels left out whole, at most `labels` of them."""
    chosen = sorted((label for label, ids in by_label.items() if len(ids) <= MAX_LABEL_ITEMS), key=stable_key)
    return [(label, sorted(by_label[label], key=stable_key)[:per_label]) for label in chosen[:labels]]


def search_without(gallery, query_ids, removed, depth, count):
    """Each query item's hits in the gallery without its `removed` ids, at most `depth`, with the
    items' vectors: ({id: vector}, [hits per query])."""
    vectors = gallery.vectors(sorted(set(query_ids)))
    present = [i for i, item_id in enumerate(query_ids) if item_id in vectors]
    if not present:
        return vectors, [None] * len(query_ids)
    k = min(depth + max(len(removed[i]) for i in present), count)
    queries = np.stack([vectors[query_ids[i]] for i in present])
    found = [hits for start in range(0, len(queries), SEARCH_CHUNK)  # the gallery is free between chunks
             for hits in gallery.search(queries[start:start + SEARCH_CHUNK], k)]
    hits = [None] * len(query_ids)
    for i, query_hits in zip(present, found):
        hits[i] = [hit for hit in query_hits if hit.id not in removed[i]][:depth]
    return vectors, hits


def held_out_searches(gallery, by_label, weight):
    """Every held-out query's candidates, scored with crowding recomputed without what it left out."""
    count = sum(len(ids) for ids in by_label.values())
    label_of = {item_id: label for label, ids in by_label.items() for item_id in ids}
    queries = [(item_id, label_of[item_id], "photo", frozenset([item_id]))
               for item_id in photo_queries(by_label, MAX_GENUINE_QUERIES)]
    for label, ids in label_queries(by_label, MAX_IMPOSTOR_LABELS, MAX_QUERIES_PER_LABEL):
        removed = frozenset(by_label[label])
        queries += [(item_id, label, "label", removed) for item_id in ids]
    _vectors, hits = search_without(gallery, [q[0] for q in queries], [q[3] for q in queries], RERANK_K, count)
    wanted = sorted({hit.id for query_hits in hits if query_hits for hit in query_hits})
    crowd_hits = crowding_searches(gallery, wanted, queries, hits, count) if weight else {}
    held_out = []
    for (item_id, label, kind, removed), query_hits in zip(queries, hits):
        if query_hits is None:  # removed from the gallery meanwhile
            continue
        candidates = []
        for hit in query_hits:
            crowding = (crowding_of(hit.label, [h for h in crowd_hits[hit.id] if h.id not in removed][:SEARCH_K])
                        if weight else 0.0)
            candidates.append(Candidate(hit.id, hit.label, float(hit.score), crowding,
                                        float(hit.score) - weight * crowding))
        held_out.append(HeldOut(item_id, label, kind, tuple(sorted(candidates, key=lambda c: -c.score))))
    return held_out


def crowding_searches(gallery, candidate_ids, queries, hits, count):
    """{candidate id: its own hits}, deep enough to drop any query's held-out items and keep SEARCH_K."""
    deepest = max((len(removed) for (_i, _l, _k, removed), query_hits in zip(queries, hits) if query_hits),
                  default=0)
    own = [frozenset() for _ in candidate_ids]
    _vectors, own_hits = search_without(gallery, candidate_ids, own, SEARCH_K + deepest, count)
    return {item_id: found or [] for item_id, found in zip(candidate_ids, own_hits)}


def best_rows(gallery, crowding, weight, region_vectors):
    """Each image's best candidate over its regions' hits, as a row (COLUMNS), scored as the
    recognizer scores it against the gallery as it is (`crowding`: a tasks.crowding.Crowding,
    or None with weight 0); a NaN row for an image with no hit. Photos the gallery must not
    recognise, scored so, are extra impostor rows."""
    rows = []
    for vectors in region_vectors:
        hits = [hit for region_hits in gallery.search(vectors, RERANK_K) for hit in region_hits]
        crowded = crowding.of_hits(hits) if crowding is not None and weight else {}
        scored = [(hit.score - weight * crowded.get(hit.id, 0.0), hit.score, crowded.get(hit.id, 0.0))
                  for hit in hits if not crowded or hit.id in crowded]
        rows.append(max(scored) if scored else nan_row())
    return np.array(rows, np.float64).reshape(-1, len(COLUMNS))


def nan_row():
    return (np.nan,) * len(COLUMNS)


def pairs_of(held_out, by_label):
    """The deciding rows of held-out queries (see Pairs)."""
    photos = [h for h in held_out if h.kind == "photo"]
    labels = [h for h in held_out if h.kind == "label"]
    own = [h.best(True) for h in photos]
    other = [h.best(False) for h in photos]
    best = [h.candidates[0] if h.candidates else None for h in labels]

    def rows(candidates):
        return np.array([c.row if c else nan_row() for c in candidates], np.float64).reshape(-1, len(COLUMNS))

    def ids(candidates):
        return [c.id if c else -1 for c in candidates]

    return Pairs(genuine=rows(own), confuser=rows(other), impostor=rows(best),
                 genuine_ids=np.array(list(zip([h.query_id for h in photos], ids(own), ids(other))),
                                      np.int64).reshape(-1, 3),
                 impostor_ids=np.array(list(zip([h.query_id for h in labels], ids(best))), np.int64).reshape(-1, 2),
                 impostor_folds=np.array([stable_key(h.label)[0] % 2 for h in labels], np.int64),
                 labels=len(by_label), items=sum(len(v) for v in by_label.values()))


def gallery_pairs(gallery, weight, by_label=None) -> Pairs:
    """The gallery scored against itself (module docstring); `weight`: crowding's share, 0 for
    plain scores."""
    by_label = catalogue(gallery) if by_label is None else by_label
    return pairs_of(held_out_searches(gallery, by_label, weight), by_label)



@dataclasses.dataclass(frozen=True)
class Calibration:
    """The threshold a gallery is searched with and where it comes from."""
    score_thres: float
    fallback: float  # the preset's threshold, used when the gallery is too small to say
    target_false_accept: float
    decision: Optional[Decision]  # None: the fallback is used
    reason: str  # why the fallback is used ("" when calibrated)
    items: int
    labels: int
    extra_impostors: int = 0  # rows of photos the caller said must be rejected

    @property
    def calibrated(self):
        return self.decision is not None

    def as_dict(self):
        """What stats, /metrics and clas-gallery report."""
        out = {"score_thres": self.score_thres, "calibrated": self.calibrated, "fallback": self.fallback,
               "target_false_accept": self.target_false_accept, "items": self.items, "labels": self.labels}
        if self.decision is None:
            return {**out, "reason": self.reason}
        decision = self.decision.as_dict()
        return {**out, "estimated_false_accept": decision["estimated_false_accept"],
                "estimated_known_accept": decision["estimated_known_accept"],
                "estimated_known_right": decision["estimated_known_right"],
                "genuine_samples": decision["genuine"], "impostor_samples": decision["impostor"],
                "extra_impostors": self.extra_impostors}


def decide(pairs, target_false_accept, fallback, extra_impostor_rows=()):
    """The Calibration of these pairs: their decision's threshold, or the fallback with the reason."""
    extra = np.asarray(extra_impostor_rows, np.float64).reshape(-1, pairs.impostor.shape[1])
    common = dict(fallback=fallback, target_false_accept=target_false_accept, items=pairs.items,
                  labels=pairs.labels, extra_impostors=len(extra))
    if pairs.labels < MIN_LABELS:
        return Calibration(score_thres=fallback, decision=None, reason=f"{pairs.labels} labels; calibrating "
                           f"needs at least {MIN_LABELS}", **common)
    try:
        decision = fit_decision(pairs.genuine[:, :1], np.vstack([pairs.impostor, extra])[:, :1],
                                target_false_accept, confuser_rows=pairs.confuser[:, :1])
    except TooFewSamples as err:
        return Calibration(score_thres=fallback, decision=None, reason=f"{err} (at most {MAX_QUERIES_PER_LABEL} "
                           f"per label)", **common)
    return Calibration(score_thres=decision.threshold, decision=decision, reason="", **common)


def calibrate(gallery, target_false_accept, weight, fallback, extra_impostor_rows=()):
    """The gallery's own threshold at the target false-accept rate (module docstring)."""
    return decide(gallery_pairs(gallery, weight), target_false_accept, fallback, extra_impostor_rows)
