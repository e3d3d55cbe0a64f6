"""The faiss backend's state in memory: the items and the faiss index over them, changed only
by applying log records (a live change and a replayed one take the same path), written into a
snapshot and restored from one.

IVF needs training: the state searches exactly until it first holds
`ivf_training_size(nlist, pq_size)` vectors, then trains on all it has and switches to IVF.
faiss's HNSW cannot delete, so a removed HNSW item stays in the graph as a tombstone that
searches skip, until tombstones reach a quarter of the graph and it is rebuilt from the live items.
"""
import math
import time
from collections import Counter
from dataclasses import asdict

import numpy as np

from ..errors import GalleryError, short
from .interface import Hit, Item
from .items import Items
from .snapshot import FORMAT_VERSION, json_array, snapshot_problems
from .vectors import deserialize_index, ivf_training_size, new_index, scores_from_distances, serialize_index


class FaissState:
    def __init__(self, config):
        self.config = config
        self.items = Items(config)
        self.index = new_index(config)
        self.trained_ivf = False
        self.tombstones = 0  # removed items still inside the HNSW graph
        self.seq = 0  # last log record applied
        self.next_id = 0

    # -- records ---------------------------------------------------------------------------

    def add_record(self, codes, labels, docs):
        """(header, codes) of the log record adding these items under the next ids."""
        ids = list(range(self.next_id, self.next_id + len(codes)))
        return {"seq": self.seq + 1, "op": "add", "ids": ids, "labels": labels, "docs": docs,
                "added_at": round(time.time(), 3)}, codes

    def copy_record(self, ids, codes, labels, docs, added_at, next_id):
        """(header, codes) of the record adding copies of another gallery's items under their own
        ids (increasing, above every id here) and added_at, reserving ids below next_id."""
        ids = [int(i) for i in ids]
        if ids and (ids[0] < self.next_id or any(b <= a for a, b in zip(ids, ids[1:]))):
            raise GalleryError(f"copied ids must increase from {self.next_id}, got {ids[:5]}...")
        return {"seq": self.seq + 1, "op": "add", "ids": ids, "labels": labels, "docs": docs, "next_id": next_id,
                "added_at": [None if a is None else float(a) for a in added_at]}, codes

    def relabel_record(self, ids, labels, new_label):
        """(header, None) of the record giving the live items with these ids or labels the label
        `new_label`; (None, None) when none is live."""
        rows = self._rows_of(ids, labels)
        if not rows.size:
            return None, None
        return {"seq": self.seq + 1, "op": "relabel", "ids": self.items.ids[rows].tolist(), "label": new_label}, None

    def _rows_of(self, ids, labels):
        rows, found = self.items.find(ids)
        return np.union1d(rows[found], self.items.live_rows_with_labels(labels)).astype(np.int64)

    def remove_record(self, ids, labels):
        """(header, None) of the record removing the live items with these ids or labels; (None,
        None) when none is live."""
        rows = self._rows_of(ids, labels)
        if not rows.size:
            return None, None
        return {"seq": self.seq + 1, "op": "remove", "ids": self.items.ids[rows].tolist()}, None

    def apply(self, header, codes):
        ids = np.asarray(header["ids"], dtype=np.int64)
        if header["op"] == "relabel":
            rows, found = self.items.find(ids)
            self.items.relabel(rows[found], header["label"])
        elif header["op"] == "add":
            self.items.append(ids, codes, header["labels"], header["docs"], _added_at(header.get("added_at")))
            self.next_id = max(int(ids[-1]) + 1 if len(ids) else 0, header.get("next_id", 0), self.next_id)
            if not len(ids):
                self.seq = header["seq"]
                return
            if self.config.method == "IVF" and not self.trained_ivf and \
                    self.items.live_count() >= ivf_training_size(self.config.nlist, self.config.pq_size):
                self._train_ivf()
            else:
                self.index.add_with_ids(codes, ids)
        else:
            rows, found = self.items.find(ids)
            rows = rows[found]
            self.items.kill(rows)
            if self.config.method == "HNSW32":
                self.tombstones += len(rows)
                if self.tombstones * 4 >= self.index.ntotal:
                    self._rebuild()
            else:
                self.index.remove_ids(self.items.ids[rows])
        self.seq = header["seq"]

    def replay(self, path, records):
        """Apply the log records newer than the state; replaying twice changes nothing."""
        for header, body in records:
            if header["seq"] <= self.seq:
                continue  # already in the snapshot (a crash between snapshot and log reset)
            if header["seq"] != self.seq + 1:
                raise GalleryError(f"{path}: log jumps from sequence {self.seq} to {header['seq']}; "
                                   f"records are missing")
            codes = self._record_codes(path, header, body) if header["op"] == "add" else None
            self.apply(header, codes)

    def _record_codes(self, path, header, body):
        count, width = len(header["ids"]), self.config.code_width
        codes = np.frombuffer(body, dtype=self.config.code_dtype)
        if codes.size != count * width or (not count and "next_id" not in header) or \
                (count and header["ids"][0] < self.next_id):
            raise GalleryError(f"{path}: add record {header['seq']} does not match the gallery "
                               f"({count} ids, {codes.size} values, expected {count * width})")
        return codes.reshape(count, width)

    def _train_ivf(self):
        rows = self.items.live_rows()
        index = new_index(self.config, trained_ivf=True)
        index.train(self.items.codes[rows])
        index.add_with_ids(self.items.codes[rows], self.items.ids[rows])
        self.index, self.trained_ivf = index, True

    def _rebuild(self):
        self.items.compact()
        self.index = new_index(self.config, self.trained_ivf)
        if self.items.n:
            self.index.add_with_ids(self.items.codes[:self.items.n], self.items.ids[:self.items.n])
        self.tombstones = 0

    # -- reading ---------------------------------------------------------------------------

    def search(self, codes, k):
        wanted = min(k, self.items.live_count())
        if wanted == 0 or not len(codes):
            return [[] for _ in codes]
        distances, ids, rows, found = self._search_live(codes, wanted)
        scores = scores_from_distances(distances, self.config)
        return [self._hits(scores[q], ids[q], rows[q], found[q], wanted) for q in range(len(codes))]

    def _search_live(self, codes, wanted):
        """Search deep enough that every query has `wanted` live hits, or the whole index was asked."""
        fetch = min(self.index.ntotal, wanted if not self.tombstones else 2 * wanted + 8)
        while True:
            distances, ids = self.index.search(codes, fetch)
            rows, found = self.items.find(ids)
            if not self.tombstones or fetch == self.index.ntotal or (found.sum(axis=1) >= wanted).all():
                return distances, ids, rows, found
            fetch = min(self.index.ntotal, fetch * 4)

    def _hits(self, scores, ids, rows, found, wanted):
        items = self.items
        return [Hit(int(ids[i]), items.labels[rows[i]], items.docs[rows[i]], float(scores[i]))
                for i in np.flatnonzero(found)[:wanted]]

    def list_items(self, offset, limit, label=None, text=None, after=None):
        """(items of one page, how many match): live items in id order, filtered by label and by
        text in label or doc, from `offset` on (after `after`, an id, when given)."""
        rows = self.items.matching_rows(label, text)
        if after is not None:  # rows and ids both increase: the rows before the first id above `after`
            offset += int(np.searchsorted(rows, np.searchsorted(self.items.ids[:self.items.n], after, side="right")))
        items = self.items
        return [Item(int(items.ids[row]), items.labels[row], items.docs[row], _seconds(items.added_at[row]))
                for row in rows[offset:offset + limit]], len(rows)

    def label_counts(self):
        return dict(sorted(Counter(self.items.labels[row] for row in self.items.live_rows()).items()))

    def live_items(self):
        """(ids, codes, labels, docs) of every live item."""
        rows = self.items.live_rows()
        return (self.items.ids[rows], self.items.codes[rows], [self.items.labels[row] for row in rows],
                [self.items.docs[row] for row in rows])

    # -- snapshot --------------------------------------------------------------------------

    def compact(self):
        """Before a snapshot: removed rows go, except from an HNSW graph, which still holds them."""
        if self.config.method != "HNSW32":
            self.items.compact()

    def snapshot_arrays(self):
        n = self.items.n
        meta = {"format": FORMAT_VERSION, "config": asdict(self.config), "seq": self.seq,
                "next_id": self.next_id, "trained_ivf": self.trained_ivf}
        return {"meta": json_array(meta), "ids": self.items.ids[:n], "codes": self.items.codes[:n],
                "live": self.items.live[:n], "added_at": self.items.added_at[:n],
                "records": json_array({"labels": self.items.labels, "docs": self.items.docs}),
                "index": serialize_index(self.index, self.config)}

    @classmethod
    def restored(cls, config, path, meta, records, arrays):
        """The state a snapshot holds, refusing one whose parts disagree."""
        ids, codes, live = arrays["ids"], arrays["codes"], arrays["live"]
        n = len(ids)
        problems = snapshot_problems(meta, records, arrays, config)
        if problems:
            raise GalleryError(f"{path}: snapshot is inconsistent: {'; '.join(problems)}")
        try:
            index = deserialize_index(arrays["index"], config)
        except RuntimeError as e:
            raise GalleryError(f"{path}: snapshot's faiss index cannot be loaded: {short(str(e), 200)}") from None
        if index.ntotal != n or index.d != config.dim:
            raise GalleryError(f"{path}: snapshot's faiss index holds {index.ntotal} vectors of dimension {index.d}, "
                               f"but the snapshot has {n} items of dimension {config.dim}")
        state = cls(config)
        state.items = Items(config, ids, codes, records["labels"], records["docs"], live, arrays.get("added_at"))
        state.index = index
        state.trained_ivf = bool(meta["trained_ivf"])
        state.tombstones = n - int(live.sum())
        state.seq = int(meta["seq"])
        state.next_id = int(meta["next_id"])
        return state


def _added_at(value):
    """A record's added_at (one time, or one per item with None for unknown) as Items take it."""
    if isinstance(value, list):
        return np.array([np.nan if v is None else v for v in value], dtype=np.float64)
    return value


def _seconds(value):
    return None if math.isnan(value) else float(value)
