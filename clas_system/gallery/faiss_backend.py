"""The recognition gallery: labelled feature vectors, searchable with faiss, durable on disk.

The obvious calls:

    from clas_system.gallery import create_gallery, open_gallery, read_gallery_list
    gallery = create_gallery("gallery/", dim=512, method="HNSW32", metric="IP",
                             fingerprint={"model": "PPLCNetV2_base", "resize": 224})
    ids = gallery.add(vectors, labels)      # durable once it returns
    gallery.search(queries, k=5)            # [[Hit(id, label, doc, score), ...] per query]
    gallery.remove(labels=["cat"])          # or ids=[...]; returns how many were removed
    gallery.save()                          # compaction: snapshot, then an empty log
    gallery.close()

    open_gallery("gallery/", expected_fingerprint={"model": "PPLCNetV2_base", "resize": 224})

Scores: higher is better for every metric, and hits come best first.
  IP       inner product; the cosine similarity when features are L2-normalised, as PaddleClas's are.
           The gallery never normalises anything itself.
  L2       negative squared Euclidean distance. PaddleClas reports faiss's squared distance itself
           (lower is better); here its sign is flipped, so 0 is an exact match.
  hamming  1 - hamming_distance / dim, in [0, 1]. Vectors of `dim` values are binarised as
           value > 0 (so 0/1 codes and sign codes both work) and packed with np.packbits.

Methods: "Flat" (exact), "HNSW32", "IVF" (IVF{nlist},Flat, or IVF{nlist},PQ{pq_size}; BIVF{nlist}
for hamming). IVF needs training: the gallery searches exactly until it first holds
`ivf_training_size(nlist, pq_size)` vectors, then trains on all it has and switches to IVF.

Files in the gallery directory:
  gallery.npz  snapshot: settings, fingerprint, items, the serialized faiss index, and the sequence
               number of the last log record it contains (np.savez, no pickle)
  gallery.wal  write-ahead log: one length + crc32 record per add/remove since the snapshot,
               fsync'd before the call returns, so a returned call survives kill -9
  LOCK         flock'd by the one writer; readers in other processes use read_only=True

The items (float32 vectors, packed bits for hamming) are kept beside the faiss index as the source
of truth for IVF training and HNSW rebuilds; a Flat gallery holds its vectors twice in memory.
Flat and IVF remove natively. faiss's HNSW cannot delete, so a removed HNSW item stays in the graph
as a tombstone that searches skip, until tombstones reach a quarter of the graph and it is rebuilt
from the live items.
"""
import fcntl
import json
import os
import struct
import threading
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import faiss
import numpy as np

__all__ = ["METHODS", "METRICS", "Gallery", "GalleryConfig", "GalleryError", "Hit", "create_gallery",
           "ivf_training_size", "open_gallery", "read_gallery_list"]

METHODS = ("Flat", "HNSW32", "IVF")
METRICS = ("IP", "L2", "hamming")
SNAPSHOT = "gallery.npz"
WAL = "gallery.wal"
LOCK = "LOCK"
FORMAT_VERSION = 1
# faiss's default efSearch of 16 misses true neighbours on 512-d features even at k=5.
HNSW_EF_SEARCH = 64
# faiss warns when k-means gets fewer training points than this per centroid.
POINTS_PER_CENTROID = 39
RECORD_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
RECORD_MAGIC = b"GWAL"
DELIMITER_NAMES = {"\t": "a tab", " ": "a space", ",": "a comma", ";": "a semicolon"}


class GalleryError(Exception):
    """A gallery cannot be created, opened, read or changed as asked; the message says why."""


class Hit(NamedTuple):
    id: int
    label: str
    doc: Optional[str]
    score: float


@dataclass(frozen=True)
class GalleryConfig:
    dim: int
    method: str
    metric: str
    nlist: int
    pq_size: Optional[int]
    nprobe: int
    fingerprint: Optional[dict]

    @property
    def binary(self):
        return self.metric == "hamming"

    @property
    def code_width(self):
        """Bytes per packed code (hamming) or floats per vector."""
        return self.dim // 8 if self.binary else self.dim

    @property
    def code_dtype(self):
        return np.uint8 if self.binary else np.float32


# ---------------------------------------------------------------------------------------------
# Settings and the faiss index


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GalleryError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _json_copy(value, name):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise GalleryError(f"{name} must be JSON-serialisable: {e}") from None


def gallery_config(dim, method="HNSW32", metric="IP", fingerprint=None, nlist=256, pq_size=None, nprobe=None):
    """Checked settings; every bad value raises GalleryError naming it and what is allowed."""
    dim = _positive_int(dim, "dim")
    if method not in METHODS:
        raise GalleryError(f"unknown index method {method!r}; allowed: {', '.join(METHODS)}")
    if metric not in METRICS:
        raise GalleryError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if metric == "hamming" and dim % 8:
        raise GalleryError(f"metric 'hamming' needs dim to be a multiple of 8 (bits are packed in bytes), got {dim}")
    nlist = _positive_int(nlist, "nlist")
    if pq_size is not None:
        pq_size = _positive_int(pq_size, "pq_size")
        if method != "IVF":
            raise GalleryError(f"pq_size applies only to method 'IVF', not {method!r}")
        if metric == "hamming":
            raise GalleryError("pq_size cannot be used with metric 'hamming' (binary IVF has no PQ)")
        if dim % pq_size:
            raise GalleryError(f"pq_size must divide dim: {dim} is not a multiple of {pq_size}")
    nprobe = max(1, nlist // 8) if nprobe is None else _positive_int(nprobe, "nprobe")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise GalleryError(f"fingerprint must be a dict or None, got {type(fingerprint).__name__}")
    return GalleryConfig(dim, method, metric, nlist, pq_size, min(nprobe, nlist),
                         _json_copy(fingerprint, "fingerprint"))


def ivf_training_size(nlist, pq_size=None):
    """How many vectors an IVF gallery holds before it trains; until then it searches exactly."""
    return POINTS_PER_CENTROID * max(nlist, 256 if pq_size else 1)  # PQ codebooks have 256 centroids


def index_factory_string(config, trained_ivf):
    """The faiss factory string; an IVF gallery not yet trained uses an exact index."""
    if config.method == "IVF" and trained_ivf:
        if config.binary:
            return f"BIVF{config.nlist}"
        return f"IVF{config.nlist},{f'PQ{config.pq_size}' if config.pq_size else 'Flat'}"
    base = "Flat" if config.method == "IVF" else config.method
    return f"IDMap2,{'B' if config.binary else ''}{base}"


def new_index(config, trained_ivf=False):
    """An empty faiss index whose labels are gallery ids (IVF: still to be trained)."""
    spec = index_factory_string(config, trained_ivf)
    if config.binary:
        index = faiss.index_binary_factory(config.dim, spec)
    else:
        metric = faiss.METRIC_INNER_PRODUCT if config.metric == "IP" else faiss.METRIC_L2
        index = faiss.index_factory(config.dim, spec, metric)
    tune_index(index, config)
    return index


def tune_index(index, config):
    if isinstance(index, (faiss.IndexIVF, faiss.IndexBinaryIVF)):
        index.nprobe = config.nprobe
    if config.method == "HNSW32":
        downcast = faiss.downcast_IndexBinary if config.binary else faiss.downcast_index
        downcast(index.index).hnsw.efSearch = HNSW_EF_SEARCH


def serialize_index(index, config):
    return faiss.serialize_index_binary(index) if config.binary else faiss.serialize_index(index)


def deserialize_index(data, config):
    index = faiss.deserialize_index_binary(data) if config.binary else faiss.deserialize_index(data)
    tune_index(index, config)
    return index


def scores_from_distances(distances, config):
    """faiss distances -> scores where higher is better (see the module docstring)."""
    if config.metric == "IP":
        return distances.astype(np.float64)
    if config.metric == "L2":
        return -distances.astype(np.float64)
    return 1.0 - distances.astype(np.float64) / config.dim


# ---------------------------------------------------------------------------------------------
# Checking what callers pass in


def vectors_to_codes(vectors, config, what="vectors"):
    """[n, dim] (or one [dim] vector) -> float32 [n, dim], or packed bits [n, dim/8] for hamming."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise GalleryError(f"{what} must be a numeric array [n, {config.dim}]: {e}") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise GalleryError(f"{what} must be a 2-D array [n, {config.dim}], got shape {array.shape}")
    if array.shape[1] != config.dim:
        raise GalleryError(f"{what} have dimension {array.shape[1]}, the gallery expects {config.dim}")
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        raise GalleryError(f"{what} contain NaN or infinite values in rows {bad_rows[:10].tolist()}")
    if config.binary:
        return np.packbits(array > 0, axis=1)
    return np.ascontiguousarray(array)


def _check_labels(labels, count):
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    if len(labels) != count:
        raise GalleryError(f"got {count} vectors but {len(labels)} labels; pass one label per vector")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise GalleryError(f"labels[{i}] must be a non-empty string, got {label!r}")
    return [str(label) for label in labels]


def _check_docs(docs, count):
    if docs is None:
        return [None] * count
    if isinstance(docs, str):
        docs = [docs]
    docs = list(docs)
    if len(docs) != count:
        raise GalleryError(f"got {count} vectors but {len(docs)} docs; pass one doc (or None) per vector")
    for i, doc in enumerate(docs):
        if doc is not None and not isinstance(doc, str):
            raise GalleryError(f"docs[{i}] must be a string or None, got {type(doc).__name__}")
    return docs


def _check_ids(ids):
    values = [ids] if isinstance(ids, (int, np.integer)) else list(ids)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GalleryError(f"ids must be integers, got {value!r}")
    return np.asarray(values, dtype=np.int64)


def fingerprint_differences(stored, expected):
    """The keys whose values differ, each as 'key (gallery: ..., expected: ...)'."""
    def shown(d, key):
        return "missing" if key not in d else _short(repr(d[key]))
    stored, expected = stored or {}, expected or {}
    keys = sorted(set(stored) | set(expected))
    return [f"{key} (gallery: {shown(stored, key)}, expected: {shown(expected, key)})"
            for key in keys if key not in stored or key not in expected or stored[key] != expected[key]]


def _short(text, limit=80):
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# The gallery list file


def read_gallery_list(list_path, image_root, delimiter="\t"):
    """PaddleClas gallery list (`relative/path<delimiter>label` per line) -> [(absolute image path, label)].

    Blank lines are skipped. Labels may contain spaces; surrounding whitespace is stripped."""
    if not isinstance(delimiter, str) or not delimiter:
        raise GalleryError(f"delimiter must be a non-empty string, got {delimiter!r}")
    separator = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    try:
        lines = Path(list_path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise GalleryError(f"cannot read gallery list {list_path}: {e}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(delimiter)]
        if len(fields) != 2 or not all(fields):
            hint = " (it has spaces but no tab)" if delimiter == "\t" and "\t" not in line and " " in line else ""
            raise GalleryError(
                f"{list_path}, line {number}: expected two non-empty fields, image path and label, separated "
                f"by {separator}; got {_short(repr(line))}{hint}. The separator must be {separator} "
                f"(pass delimiter=... for another)")
        image_path = os.path.abspath(os.path.join(image_root, fields[0]))
        if not os.path.isfile(image_path):
            raise GalleryError(f"{list_path}, line {number}: image {image_path} does not exist")
        entries.append((image_path, fields[1]))
    return entries


# ---------------------------------------------------------------------------------------------
# Items: the source of truth beside the index


def _grow(array, size):
    if len(array) >= size:
        return array
    bigger = np.empty((max(size, 2 * len(array)),) + array.shape[1:], array.dtype)
    bigger[:len(array)] = array
    return bigger


class _Items:
    """Rows of (id, code, label, doc, live) in increasing id order. A dead row is a removed item
    that is still in the faiss index (an HNSW tombstone) or not yet compacted away."""

    def __init__(self, config, ids=None, codes=None, labels=(), docs=(), live=None):
        self.n = 0 if ids is None else len(ids)
        self.ids = np.empty(0, np.int64) if ids is None else ids
        self.codes = np.empty((0, config.code_width), config.code_dtype) if codes is None else codes
        self.labels = list(labels)
        self.docs = list(docs)
        self.live = np.ones(self.n, bool) if live is None else live

    def append(self, ids, codes, labels, docs):
        end = self.n + len(ids)
        self.ids, self.codes, self.live = (_grow(a, end) for a in (self.ids, self.codes, self.live))
        self.ids[self.n:end], self.codes[self.n:end], self.live[self.n:end] = ids, codes, True
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
        wanted = set(labels)
        return np.array([row for row in self.live_rows() if self.labels[row] in wanted], dtype=np.int64)

    def kill(self, rows):
        self.live[rows] = False

    def compact(self):
        keep = self.live_rows()
        self.n = len(keep)
        self.ids, self.codes, self.live = self.ids[keep], self.codes[keep], np.ones(len(keep), bool)
        self.labels = [self.labels[row] for row in keep]
        self.docs = [self.docs[row] for row in keep]


# ---------------------------------------------------------------------------------------------
# The write-ahead log


def encode_record(header, body=b""):
    """One self-checking log record: magic, payload length, crc32, then the payload
    (4-byte JSON length, JSON header with seq/op/ids..., raw vector bytes)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    payload = struct.pack("<I", len(head)) + head + body
    return RECORD_HEADER.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _record_at(data, pos):
    """(payload, end) of the intact record at `pos`, or None if there is none."""
    if len(data) - pos < RECORD_HEADER.size:
        return None
    magic, length, crc = RECORD_HEADER.unpack_from(data, pos)
    start, end = pos + RECORD_HEADER.size, pos + RECORD_HEADER.size + length
    if magic != RECORD_MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
        return None
    return data[start:end], end


def _intact_record_after(data, pos):
    found = data.find(RECORD_MAGIC, pos)
    while found != -1:
        if _record_at(data, found) is not None:
            return found
        found = data.find(RECORD_MAGIC, found + 1)
    return None


def _decode_payload(payload, path, pos):
    try:
        (head_length,) = struct.unpack_from("<I", payload)
        header = json.loads(bytes(payload[4:4 + head_length]))
        return header, payload[4 + head_length:]
    except (struct.error, ValueError) as e:
        raise GalleryError(f"{path}: record at byte {pos} passes its checksum but cannot be decoded ({e})") from None


def read_wal(path):
    """[(header, body)] of the intact records, and the byte offset where they end.

    Only the final record can be torn (each append is fsync'd before the next starts), so a bad
    record with nothing intact after it is a crash mid-append, never acknowledged: it is dropped.
    A bad record followed by an intact one is damage, and raises."""
    data = memoryview(path.read_bytes())
    records, pos = [], 0
    while pos < len(data):
        record = _record_at(data, pos)
        if record is None:
            later = _intact_record_after(data.obj, pos + 1)
            if later is not None:
                raise GalleryError(
                    f"{path}: record at byte {pos} is corrupt and an intact record follows at byte {later}; "
                    f"the log is damaged (not a torn final write), so the gallery refuses to open rather "
                    f"than lose acknowledged changes")
            break
        payload, end = record
        records.append(_decode_payload(payload, path, pos))
        pos = end
    return records, pos


class _Wal:
    """The open log: appends are written whole and fsync'd, or undone."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.broken = False

    def append(self, record):
        if self.broken:
            raise GalleryError(f"{self.path}: an earlier write failed and could not be undone; reopen the gallery")
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError as e:
            self._undo()
            raise GalleryError(f"{self.path}: cannot write the log ({e}); the change was not made") from None
        self.size += len(record)

    def _undo(self):
        try:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        except OSError:
            self.broken = True

    def reset(self):
        try:
            os.ftruncate(self.fd, 0)
            os.fsync(self.fd)
        except OSError as e:
            raise GalleryError(f"{self.path}: the snapshot was saved but the log could not be emptied ({e}); "
                               f"its records are already in the snapshot and are skipped on open") from None
        finally:
            self.size = os.fstat(self.fd).st_size

    def close(self):
        os.close(self.fd)


# ---------------------------------------------------------------------------------------------
# The snapshot


def _json_array(value):
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(directory, arrays):
    """Write to a temp file, fsync, os.replace over the snapshot, fsync the directory."""
    target = directory / SNAPSHOT
    temp = directory / (SNAPSHOT + ".tmp")
    try:
        with open(temp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
        _fsync_directory(directory)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise GalleryError(f"cannot write snapshot {target}: {e}; the previous snapshot and log are intact") from None


def read_snapshot(path):
    """(meta, labels/docs, arrays) of a snapshot; a file that cannot be read raises naming it."""
    names = ("meta", "ids", "codes", "live", "records", "index")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in names}
        meta = json.loads(arrays["meta"].tobytes())
        records = json.loads(arrays["records"].tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise GalleryError(f"{path}: snapshot is unreadable or corrupt ({type(e).__name__}: {e}); "
                           f"refusing to open rather than start empty") from None
    if meta.get("format") != FORMAT_VERSION:
        raise GalleryError(f"{path}: snapshot format {meta.get('format')!r} is not the supported {FORMAT_VERSION}")
    return meta, records, arrays


def snapshot_problems(meta, records, arrays, config):
    """What makes a snapshot's parts disagree with each other or with its settings."""
    ids, codes, live = arrays["ids"], arrays["codes"], arrays["live"]
    n = len(ids)
    problems = []
    if ids.dtype != np.int64 or ids.ndim != 1:
        problems.append(f"ids are {ids.dtype} {ids.shape}, expected int64 ({n},)")
    if codes.dtype != config.code_dtype or codes.shape != (n, config.code_width):
        problems.append(f"vectors are {codes.dtype} {codes.shape}, expected "
                        f"{np.dtype(config.code_dtype)} {(n, config.code_width)}")
    if live.dtype != bool or live.shape != (n,):
        problems.append(f"live mask is {live.dtype} {live.shape}, expected bool ({n},)")
    if len(records.get("labels", ())) != n or len(records.get("docs", ())) != n:
        problems.append(f"labels/docs do not number {n}, one per id")
    if n > 1 and not (np.diff(ids) > 0).all():
        problems.append("ids are not increasing")
    if n and meta.get("next_id", -1) <= ids[-1]:
        problems.append("next_id is not above every id")
    return problems


# ---------------------------------------------------------------------------------------------
# The gallery


class Gallery:
    """An open gallery directory. Use create_gallery / open_gallery rather than this constructor.

    Thread-safe: every call holds one lock, so searches never see a half-applied add or remove."""

    def __init__(self, directory, config, lock_fd, read_only):
        self.directory = Path(directory)
        self.config = config
        self.read_only = read_only
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._items = _Items(config)
        self._index = new_index(config)
        self._trained_ivf = False
        self._tombstones = 0  # removed items still inside the HNSW graph
        self._seq = 0  # last log record applied
        self._next_id = 0
        self._wal = None
        self._closed = False

    # -- public ------------------------------------------------------------------------------

    def add(self, vectors, labels, docs=None):
        """Append items (no rebuild); returns their new ids. Durable once it returns."""
        codes = vectors_to_codes(vectors, self.config)
        labels = _check_labels(labels, len(codes))
        docs = _check_docs(docs, len(codes))
        if not len(codes):
            return []
        with self._lock:
            self._check_writable()
            ids = np.arange(self._next_id, self._next_id + len(codes), dtype=np.int64)
            header = {"seq": self._seq + 1, "op": "add", "ids": ids.tolist(), "labels": labels, "docs": docs}
            self._wal.append(encode_record(header, codes.tobytes()))
            self._apply(header, codes)
        return ids.tolist()

    def remove(self, ids=None, labels=None):
        """Remove items by id and/or by label; returns how many were removed (unknown ones count 0)."""
        if ids is None and labels is None:
            raise GalleryError("remove needs ids=... or labels=...")
        wanted_ids = _check_ids([] if ids is None else ids)
        wanted_labels = [] if labels is None else ([labels] if isinstance(labels, str) else list(labels))
        with self._lock:
            self._check_writable()
            rows, found = self._items.find(wanted_ids)
            rows = np.union1d(rows[found], self._items.live_rows_with_labels(wanted_labels)).astype(np.int64)
            if not rows.size:
                return 0
            header = {"seq": self._seq + 1, "op": "remove", "ids": self._items.ids[rows].tolist()}
            self._wal.append(encode_record(header))
            self._apply(header, None)
        return int(rows.size)

    def search(self, queries, k=5):
        """For each query, up to k hits best first (never removed items, never more than exist)."""
        codes = vectors_to_codes(queries, self.config, what="queries")
        k = _positive_int(k, "k")
        with self._lock:
            self._check_open()
            wanted = min(k, self._items.live_count())
            if wanted == 0 or not len(codes):
                return [[] for _ in codes]
            distances, ids, rows, found = self._search_live(codes, wanted)
            scores = scores_from_distances(distances, self.config)
            return [self._hits(scores[q], ids[q], rows[q], found[q], wanted) for q in range(len(codes))]

    def stats(self):
        with self._lock:
            live = self._items.live_rows()
            return {"count": len(live),
                    "labels": dict(sorted(Counter(self._items.labels[row] for row in live).items())),
                    "dim": self.config.dim, "method": self.config.method, "metric": self.config.metric,
                    "fingerprint": self.config.fingerprint}

    def check_fingerprint(self, expected):
        """Raise GalleryError naming the differing keys unless the gallery was built as `expected` says."""
        expected = _json_copy(expected, "expected_fingerprint")
        if expected == self.config.fingerprint:
            return
        if self.config.fingerprint is None:
            raise GalleryError(f"{self.directory}: the gallery was created without a fingerprint, so it cannot be "
                               f"checked against {_short(repr(expected))}; rebuild it with one")
        differences = ", ".join(fingerprint_differences(self.config.fingerprint, expected))
        raise GalleryError(
            f"{self.directory}: gallery fingerprint differs in {differences}. "
            f"It was built with a different feature model or preprocessing, so its scores against these "
            f"features would be meaningless (typically every score falls below the threshold); rebuild the gallery")

    def save(self):
        """Compaction: write the full snapshot atomically, then empty the log."""
        with self._lock:
            self._check_writable()
            if self.config.method != "HNSW32":
                self._items.compact()  # removed rows are already gone from these indexes
            write_snapshot(self.directory, self._snapshot_arrays())
            self._wal.reset()

    def close(self):
        """Release the files. Does not save: every returned change is in the log already."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._wal is not None:
                self._wal.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- applying changes (live calls and log replay share these) ------------------------------

    def _apply(self, header, codes):
        ids = np.asarray(header["ids"], dtype=np.int64)
        if header["op"] == "add":
            self._items.append(ids, codes, header["labels"], header["docs"])
            self._next_id = int(ids[-1]) + 1
            if self.config.method == "IVF" and not self._trained_ivf and \
                    self._items.live_count() >= ivf_training_size(self.config.nlist, self.config.pq_size):
                self._train_ivf()
            else:
                self._index.add_with_ids(codes, ids)
        else:
            rows, found = self._items.find(ids)
            rows = rows[found]
            self._items.kill(rows)
            if self.config.method == "HNSW32":
                self._tombstones += len(rows)
                if self._tombstones * 4 >= self._index.ntotal:
                    self._rebuild()
            else:
                self._index.remove_ids(self._items.ids[rows])
        self._seq = header["seq"]

    def _train_ivf(self):
        rows = self._items.live_rows()
        index = new_index(self.config, trained_ivf=True)
        index.train(self._items.codes[rows])
        index.add_with_ids(self._items.codes[rows], self._items.ids[rows])
        self._index, self._trained_ivf = index, True

    def _rebuild(self):
        self._items.compact()
        self._index = new_index(self.config, self._trained_ivf)
        if self._items.n:
            self._index.add_with_ids(self._items.codes[:self._items.n], self._items.ids[:self._items.n])
        self._tombstones = 0

    # -- searching ------------------------------------------------------------------------------

    def _search_live(self, codes, wanted):
        """Search deep enough that every query has `wanted` live hits, or the whole index was asked."""
        fetch = min(self._index.ntotal, wanted if not self._tombstones else 2 * wanted + 8)
        while True:
            distances, ids = self._index.search(codes, fetch)
            rows, found = self._items.find(ids)
            if not self._tombstones or fetch == self._index.ntotal or (found.sum(axis=1) >= wanted).all():
                return distances, ids, rows, found
            fetch = min(self._index.ntotal, fetch * 4)

    def _hits(self, scores, ids, rows, found, wanted):
        items = self._items
        return [Hit(int(ids[i]), items.labels[rows[i]], items.docs[rows[i]], float(scores[i]))
                for i in np.flatnonzero(found)[:wanted]]

    # -- files ----------------------------------------------------------------------------------

    def _snapshot_arrays(self):
        n = self._items.n
        meta = {"format": FORMAT_VERSION, "config": asdict(self.config), "seq": self._seq,
                "next_id": self._next_id, "trained_ivf": self._trained_ivf}
        return {"meta": _json_array(meta), "ids": self._items.ids[:n], "codes": self._items.codes[:n],
                "live": self._items.live[:n],
                "records": _json_array({"labels": self._items.labels, "docs": self._items.docs}),
                "index": serialize_index(self._index, self.config)}

    def _restore(self, path, meta, records, arrays):
        """Load a snapshot's state, refusing one whose parts disagree."""
        ids, codes, live = arrays["ids"], arrays["codes"], arrays["live"]
        n = len(ids)
        problems = snapshot_problems(meta, records, arrays, self.config)
        if problems:
            raise GalleryError(f"{path}: snapshot is inconsistent: {'; '.join(problems)}")
        try:
            index = deserialize_index(arrays["index"], self.config)
        except RuntimeError as e:
            raise GalleryError(f"{path}: snapshot's faiss index cannot be loaded: {_short(str(e), 200)}") from None
        if index.ntotal != n or index.d != self.config.dim:
            raise GalleryError(f"{path}: snapshot's faiss index holds {index.ntotal} vectors of dimension {index.d}, "
                               f"but the snapshot has {n} items of dimension {self.config.dim}")
        self._items = _Items(self.config, ids, codes, records["labels"], records["docs"], live)
        self._index = index
        self._trained_ivf = bool(meta["trained_ivf"])
        self._tombstones = n - int(live.sum())
        self._seq = int(meta["seq"])
        self._next_id = int(meta["next_id"])

    def _replay(self, path, records):
        """Apply the log records newer than the snapshot; replaying twice changes nothing."""
        for header, body in records:
            if header["seq"] <= self._seq:
                continue  # already in the snapshot (a crash between snapshot and log reset)
            if header["seq"] != self._seq + 1:
                raise GalleryError(f"{path}: log jumps from sequence {self._seq} to {header['seq']}; "
                                   f"records are missing")
            codes = None
            if header["op"] == "add":
                codes = self._record_codes(path, header, body)
            self._apply(header, codes)

    def _record_codes(self, path, header, body):
        count, width = len(header["ids"]), self.config.code_width
        codes = np.frombuffer(body, dtype=self.config.code_dtype)
        if codes.size != count * width or not count or header["ids"][0] < self._next_id:
            raise GalleryError(f"{path}: add record {header['seq']} does not match the gallery "
                               f"({count} ids, {codes.size} values, expected {count * width})")
        return codes.reshape(count, width)

    def _check_open(self):
        if self._closed:
            raise GalleryError(f"{self.directory}: the gallery is closed")

    def _check_writable(self):
        self._check_open()
        if self.read_only:
            raise GalleryError(f"{self.directory}: the gallery was opened read_only; "
                               f"open it without read_only to change it")


def _lock_directory(directory):
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GalleryError(f"{directory} is already open for writing (by another Gallery or process); close "
                           f"that one first, or open this one with read_only=True") from None
    return fd


def create_gallery(directory, dim, method="HNSW32", metric="IP", fingerprint=None, nlist=256, pq_size=None,
                   nprobe=None, overwrite=False):
    """A new, empty gallery in `directory`, open for writing. `fingerprint` (a JSON-serialisable dict
    describing the feature model and preprocessing) is checked by open_gallery(expected_fingerprint=...).
    nlist / pq_size / nprobe apply to method "IVF" (nprobe defaults to nlist // 8)."""
    config = gallery_config(dim, method, metric, fingerprint, nlist, pq_size, nprobe)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GalleryError(f"cannot create gallery directory {directory}: {e}") from None
    lock_fd = _lock_directory(directory)
    gallery = Gallery(directory, config, lock_fd, read_only=False)
    try:
        existing = [name for name in (SNAPSHOT, WAL) if (directory / name).exists()]
        if existing and not overwrite:
            raise GalleryError(f"{directory} already holds a gallery ({', '.join(existing)}); open it with "
                               f"open_gallery, or pass overwrite=True to replace it")
        for name in (SNAPSHOT, WAL):  # snapshot first: without it the directory is no gallery
            (directory / name).unlink(missing_ok=True)
        gallery._wal = _Wal(directory / WAL)
        write_snapshot(directory, gallery._snapshot_arrays())
    except BaseException:
        gallery.close()
        raise
    return gallery


def open_gallery(directory, expected_fingerprint=None, read_only=False):
    """Open a gallery: load the snapshot, replay the log, drop a torn final record.

    With expected_fingerprint, refuse a gallery built with another feature model or preprocessing.
    read_only=True takes no lock and changes no file, for extra reader processes (it sees the
    writer's changes only as of opening)."""
    directory = Path(directory)
    snapshot_path, wal_path = directory / SNAPSHOT, directory / WAL
    if not snapshot_path.exists():
        if wal_path.exists():
            raise GalleryError(f"{directory}: {WAL} exists but {SNAPSHOT} is missing; refusing to open rather "
                               f"than start empty")
        raise GalleryError(f"{directory} holds no gallery (no {SNAPSHOT}); create one with create_gallery")
    lock_fd = None if read_only else _lock_directory(directory)
    try:
        gallery = _load(directory, lock_fd, read_only)
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    if expected_fingerprint is not None:
        try:
            gallery.check_fingerprint(expected_fingerprint)
        except GalleryError:
            gallery.close()
            raise
    return gallery


def _load(directory, lock_fd, read_only):
    if read_only:
        # A reader can race the writer's compaction (new snapshot, emptied log): if the snapshot
        # was replaced while loading, try again.
        for _ in range(2):
            snapshot_inode = os.stat(directory / SNAPSHOT).st_ino
            try:
                return _load_once(directory, lock_fd, read_only)
            except GalleryError:
                if os.stat(directory / SNAPSHOT).st_ino == snapshot_inode:
                    raise
    return _load_once(directory, lock_fd, read_only)


def _load_once(directory, lock_fd, read_only):
    snapshot_path, wal_path = directory / SNAPSHOT, directory / WAL
    meta, records, arrays = read_snapshot(snapshot_path)
    try:
        config = gallery_config(**meta["config"])
    except (GalleryError, TypeError, KeyError) as e:
        raise GalleryError(f"{snapshot_path}: snapshot settings are invalid: {e}") from None
    gallery = Gallery(directory, config, lock_fd, read_only)
    gallery._restore(snapshot_path, meta, records, arrays)
    if not wal_path.exists():
        raise GalleryError(f"{directory}: {WAL} is missing; refusing to open without the changes it may hold")
    wal_records, intact_end = read_wal(wal_path)
    gallery._replay(wal_path, wal_records)
    if not read_only:
        (directory / (SNAPSHOT + ".tmp")).unlink(missing_ok=True)  # left by a crash mid-save
        if intact_end < wal_path.stat().st_size:
            os.truncate(wal_path, intact_end)  # drop the torn final record before appending after it
        gallery._wal = _Wal(wal_path)
        os.fsync(gallery._wal.fd)
    return gallery
