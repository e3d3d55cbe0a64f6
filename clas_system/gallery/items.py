"""The faiss backend's items: labelled vectors with ids, in memory beside the faiss index."""
import numpy as np


def _grow(array, size):
    if len(array) >= size:
        return array
    bigger = np.empty((max(size, 2 * len(array)),) + array.shape[1:], array.dtype)
    bigger[:len(array)] = array
    return bigger


class Items:
    """Rows of (id, code, label, doc, added_at, live) in increasing id order, the source of truth
    beside a faiss index. A dead row is a removed item that is still in the faiss index (an HNSW
    tombstone) or not yet compacted away. added_at is seconds since the epoch (NaN: unknown, an
    item added before it was recorded). Each label also has a number (label_numbers, in
    label_number; docs likewise), so finding a label's rows is one array comparison, and a text
    query looks at each distinct label and doc once, not at every row."""

    def __init__(self, config, ids=None, codes=None, labels=(), docs=(), live=None, added_at=None):
        self.n = 0 if ids is None else len(ids)
        self.ids = np.empty(0, np.int64) if ids is None else ids
        self.codes = np.empty((0, config.code_width), config.code_dtype) if codes is None else codes
        self.labels = list(labels)
        self.docs = list(docs)
        self.live = np.ones(self.n, bool) if live is None else live
        self.added_at = np.full(self.n, np.nan) if added_at is None else added_at
        self.label_numbers, self.doc_numbers = {}, {None: -1}
        self.label_number = np.array([self._number(label) for label in self.labels], dtype=np.int32)
        self.doc_number = np.array([self._doc_number(doc) for doc in self.docs], dtype=np.int32)

    def _number(self, label):
        return self.label_numbers.setdefault(label, len(self.label_numbers))

    def _doc_number(self, doc):
        return self.doc_numbers.setdefault(doc, len(self.doc_numbers) - 1)

    def append(self, ids, codes, labels, docs, added_at=None):
        end = self.n + len(ids)
        self.ids, self.codes, self.live, self.added_at, self.label_number, self.doc_number = (
            _grow(a, end) for a in (self.ids, self.codes, self.live, self.added_at, self.label_number,
                                    self.doc_number))
        self.ids[self.n:end], self.codes[self.n:end], self.live[self.n:end] = ids, codes, True
        self.label_number[self.n:end] = [self._number(label) for label in labels]
        self.doc_number[self.n:end] = [self._doc_number(doc) for doc in docs]
        self.added_at[self.n:end] = np.nan if added_at is None else added_at
        self.labels.extend(labels)
        self.docs.extend(docs)
        self.n = end

    def live_rows(self):
        return np.flatnonzero(self.live[:self.n])

    def live_count(self):
        return int(self.live[:self.n].sum())

    def find(self, ids):
        """Rows of `ids` (any shape) and a mask of which are live items."""
        rows = np.searchsorted(self.ids[:self.n], ids).clip(0, max(self.n - 1, 0))
        if self.n == 0:
            return rows, np.zeros(np.shape(ids), bool)
        return rows, (self.ids[rows] == ids) & self.live[rows]

    def live_rows_with_labels(self, labels):
        numbers = [self.label_numbers[label] for label in set(labels) if label in self.label_numbers]
        return np.flatnonzero(self.live[:self.n] & np.isin(self.label_number[:self.n], numbers)).astype(np.int64)

    def relabel(self, rows, label):
        for row in rows:
            self.labels[row] = label
        self.label_number[rows] = self._number(label)

    def matching_rows(self, label=None, text=None):
        """Live rows, in id order, labelled `label` (when given) whose label or doc contains `text`
        (when given; case-sensitive)."""
        rows = self.live_rows() if label is None else self.live_rows_with_labels([label])
        if text is not None:  # each distinct label and doc looked at once
            labels = [number for name, number in self.label_numbers.items() if text in name]
            docs = [number for doc, number in self.doc_numbers.items() if doc is not None and text in doc]
            rows = rows[np.isin(self.label_number[rows], labels) | np.isin(self.doc_number[rows], docs)]
        return rows

    def kill(self, rows):
        self.live[rows] = False

    def compact(self):
        keep = self.live_rows()
        self.n = len(keep)
        self.ids, self.codes, self.live = self.ids[keep], self.codes[keep], np.ones(len(keep), bool)
        self.added_at, self.label_number, self.doc_number = (self.added_at[keep], self.label_number[keep],
                                                             self.doc_number[keep])
        self.labels = [self.labels[row] for row in keep]
        self.docs = [self.docs[row] for row in keep]
