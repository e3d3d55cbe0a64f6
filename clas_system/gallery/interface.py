"""The one interface every gallery backend answers, and the checks its calls share.

    gallery.add(vectors, labels, docs=None)    # -> new ids; durable (faiss) or acknowledged (Milvus)
    gallery.search(queries, k=5)               # -> [[Hit(id, label, doc, score), ...] per query], best first
    gallery.remove(ids=None, labels=None)      # -> how many were removed (their side-store blobs go too)
    gallery.relabel(label, ids=None, labels=None)  # -> how many now carry `label`; durable like add
    gallery.list_items(offset=0, limit=50, label=None, text=None, after=None)
                                               # -> ([Item(id, label, doc, added_at)], total), in id order
    gallery.side                               # the side store: named blobs per item (side_store)
    gallery.vectors(ids)                       # -> {id: vector} of the live ones
    gallery.revision()                         # -> a token that changes when this process sees a change
    gallery.count(), gallery.stats(), gallery.items(batch), gallery.check_fingerprint(expected)
    gallery.save(), gallery.close(), gallery.describe()

Scores are higher-is-better for every metric. What callers pass is checked once, here
(CheckedCalls), before a backend sees it: vectors as codes of the gallery's shape, one label
(and doc) per vector, ids as integers, k in range.
"""
from typing import Dict, Hashable, Iterator, List, NamedTuple, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from ..errors import GalleryInputError
from .config import GalleryConfig
from .vectors import vectors_to_codes


class Hit(NamedTuple):
    id: int
    label: str
    doc: Optional[str]
    score: float


class Item(NamedTuple):
    id: int
    label: str
    doc: Optional[str]
    added_at: Optional[float]  # seconds since the epoch; None: added before it was recorded


MAX_LIST_LIMIT = 1000  # items in one list page


@runtime_checkable
class Gallery(Protocol):
    backend: str  # "faiss" or "milvus"
    config: GalleryConfig
    side: object  # side_store.SideStore: named blobs per item, deleted with it

    def describe(self) -> str: ...
    def add(self, vectors, labels, docs=None) -> List[int]: ...
    def remove(self, ids=None, labels=None) -> int: ...
    def relabel(self, label, ids=None, labels=None) -> int: ...
    def list_items(self, offset=0, limit=50, label=None, text=None, after=None) -> Tuple[List[Item], int]: ...
    def search(self, queries, k=5) -> List[List[Hit]]: ...
    def vectors(self, ids) -> Dict[int, np.ndarray]: ...
    def revision(self) -> Hashable: ...
    def count(self) -> int: ...
    def stats(self) -> dict: ...
    def items(self, batch=4096) -> Iterator: ...
    def check_fingerprint(self, expected) -> None: ...
    def save(self) -> None: ...
    def close(self) -> None: ...


def check_labels(labels, count, max_bytes=None):
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    if len(labels) != count:
        raise GalleryInputError(f"got {count} vectors but {len(labels)} labels; pass one label per vector", "labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise GalleryInputError(f"labels[{i}] must be a non-empty string, got {label!r}", "labels", i)
    check_text_sizes(labels, "labels", max_bytes)
    return labels


def check_docs(docs, count, max_bytes=None):
    if docs is None:
        return [None] * count
    if isinstance(docs, str):
        docs = [docs]
    docs = list(docs)
    if len(docs) != count:
        raise GalleryInputError(f"got {count} vectors but {len(docs)} docs; pass one doc (or None) per vector", "docs")
    for i, doc in enumerate(docs):
        if doc is not None and not isinstance(doc, str):
            raise GalleryInputError(f"docs[{i}] must be a string or None, got {type(doc).__name__}", "docs", i)
    check_text_sizes(docs, "docs", max_bytes)
    return docs


def check_text_sizes(values, field, max_bytes):
    if max_bytes is None:
        return
    for i, value in enumerate(values):
        if value is not None and len(value.encode()) > max_bytes:
            raise GalleryInputError(f"{field}[{i}] is {len(value.encode())} bytes; this backend keeps at most "
                                    f"{max_bytes} (UTF-8)", field, i)


def check_ids(ids):
    values = [ids] if isinstance(ids, (int, np.integer)) else list(ids)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GalleryInputError(f"ids must be integers, got {value!r}", "ids", i)
    return np.asarray(values, dtype=np.int64)


def check_count(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise GalleryInputError(f"{name} must be a whole number >= {low}, got {value!r}", name)
    if high is not None and value > high:
        raise GalleryInputError(f"{name} must be at most {high}, got {value}", name)
    return int(value)


def check_optional_text(value, name):
    if value is not None and (not isinstance(value, str) or not value):
        raise GalleryInputError(f"{name} must be a non-empty string or None, got {value!r}", name)
    return value


def label_selection(ids, labels):
    """(ids array, labels list) of a remove or relabel, at least one of them given."""
    wanted_labels = [] if labels is None else ([labels] if isinstance(labels, str) else list(labels))
    return check_ids([] if ids is None else ids), wanted_labels


def check_k(k, max_k=None):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise GalleryInputError(f"k must be a positive integer, got {k!r}", "k")
    if max_k is not None and k > max_k:
        raise GalleryInputError(f"k must be at most {max_k} with this backend, got {k}", "k")
    return int(k)


class CheckedCalls:
    """add, remove and search for every backend: the arguments checked here, then handed on as
    (codes, labels, docs), (ids, labels) and (codes, k) to the backend's _add, _remove, _search.
    A backend with tighter limits sets max_text_bytes and max_k."""

    max_text_bytes = None
    max_k = None

    def add(self, vectors, labels, docs=None):
        """Append items; returns their new ids."""
        codes = vectors_to_codes(vectors, self.config)
        labels = check_labels(labels, len(codes), self.max_text_bytes)
        docs = check_docs(docs, len(codes), self.max_text_bytes)
        return self._add(codes, labels, docs) if len(codes) else []

    def remove(self, ids=None, labels=None):
        """Remove items by id and/or by label; returns how many were removed (unknown ones count 0)."""
        if ids is None and labels is None:
            raise GalleryInputError("remove needs ids=... or labels=...")
        removed_ids = self._remove(*label_selection(ids, labels))
        self.side.delete(removed_ids)
        return len(removed_ids)

    def relabel(self, label, ids=None, labels=None):
        """Give the live items with these ids or labels the label `label`; returns how many."""
        if ids is None and labels is None:
            raise GalleryInputError("relabel needs ids=... or labels=...")
        [label] = check_labels([label], 1, self.max_text_bytes)
        return self._relabel(*label_selection(ids, labels), label)

    def list_items(self, offset=0, limit=50, label=None, text=None, after=None):
        """([Item], total): live items in increasing id order, labelled `label` (when given), whose
        label or doc contains `text` (when given, case-sensitive), skipping `offset` of them after
        the id `after` (when given; a cursor for deep pages). total counts every match."""
        offset = check_count(offset, "offset", 0)
        limit = check_count(limit, "limit", 1, MAX_LIST_LIMIT)
        if after is not None:
            after = check_count(after, "after", -1)
        return self._list_items(offset, limit, check_optional_text(label, "label"),
                                check_optional_text(text, "query"), after)

    def search(self, queries, k=5):
        """For each query, up to k hits best first (never removed items, never more than exist)."""
        codes = vectors_to_codes(queries, self.config, what="queries")
        return self._search(codes, check_k(k, self.max_k))

    def vectors(self, ids):
        """The stored vectors of the live items among `ids`, by id (removed or unknown ids are absent)."""
        return self._vectors(check_ids(ids))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
