"""The faiss backend: an embedded gallery in one directory, shared by every process on the machine.

    gallery = create_gallery("gallery/", dim=512, method="HNSW32", metric="IP",
                             fingerprint={"model": "PPLCNetV2_base", "resize": 224})
    ids = gallery.add(vectors, labels)      # durable once it returns
    gallery.search(queries, k=5)            # [[Hit(id, label, doc, score), ...] per query]
    gallery.remove(labels=["cat"])          # or ids=[...]; returns how many were removed
    gallery.save()                          # compaction: snapshot, then an empty log
    gallery.close()

Methods: "Flat" (exact), "HNSW32", "IVF" (IVF{nlist},Flat, or IVF{nlist},PQ{pq_size}; BIVF{nlist}
for hamming). IVF needs training: the gallery searches exactly until it first holds
`ivf_training_size(nlist, pq_size)` vectors, then trains on all it has and switches to IVF.

Files in the gallery directory: gallery.npz (the snapshot), gallery.wal (the write-ahead log),
and LOCK. Any number of processes may open the same directory (gunicorn workers, a CLI):
  - a change takes LOCK exclusively (flock), first applies the records other processes appended,
    then appends its own record, fsyncs it, applies it and lets go; ids are therefore unique;
  - every call first stats the log (one syscall); when it grew, the new records are read under a
    shared LOCK and applied, so each process sees every acknowledged change on its next call;
  - compaction (save) writes the snapshot and replaces the log with an empty file under the
    exclusive LOCK; the log's new inode tells the others to reload the snapshot.
The LOCK file is flock'd, so this holds on one machine's local filesystem (not across NFS hosts).

The items (float32 vectors, packed bits for hamming) are kept beside the faiss index as the source
of truth for IVF training and HNSW rebuilds; a Flat gallery holds its vectors twice in memory.
Flat and IVF remove natively. faiss's HNSW cannot delete, so a removed HNSW item stays in the graph
as a tombstone that searches skip, until tombstones reach a quarter of the graph and it is rebuilt
from the live items.
"""
import fcntl
import os
import threading
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .config import check_fingerprint, gallery_config, positive_int, short
from .errors import GalleryError
from .items import Hit, Items, check_docs, check_labels, check_removal
from .log import WAL, append_record, cut_log, encode_record, log_identity, read_wal, start_new_log
from .snapshot import FORMAT_VERSION, SNAPSHOT, json_array, read_snapshot, snapshot_problems, write_snapshot
from .vectors import deserialize_index, ivf_training_size, new_index, scores_from_distances, serialize_index, \
    vectors_to_codes

LOCK = "LOCK"

_open_galleries = weakref.WeakSet()


def _reopen_after_fork():
    for gallery in list(_open_galleries):
        gallery._after_fork()


os.register_at_fork(after_in_child=_reopen_after_fork)


def _open_lock_file(directory, read_only):
    try:
        return os.open(directory / LOCK, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CREAT, 0o644)
    except OSError as e:
        raise GalleryError(f"cannot open {directory / LOCK}: {e}") from None


class Gallery:
    """An open gallery directory. Use create_gallery / open_gallery rather than this constructor.

    Thread-safe: every call holds one lock, so searches never see a half-applied add or remove.
    Fork-safe: a child process gets its own LOCK file handle and follows the log like any other."""

    backend = "faiss"

    def __init__(self, directory, config, read_only):
        self.directory = Path(directory)
        self.config = config
        self.read_only = read_only
        self._lock = threading.Lock()
        self._lock_fd = _open_lock_file(self.directory, read_only)
        self._closed = False
        self._log_path = self.directory / WAL
        self._log_identity = None  # which log file the in-memory state follows
        self._log_end = 0  # the byte offset after the last record applied
        if config is not None:  # else the first _reload reads it from the snapshot
            self._reset_state()
        _open_galleries.add(self)

    def _reset_state(self):
        self._items = Items(self.config)
        self._index = new_index(self.config)
        self._trained_ivf = False
        self._tombstones = 0  # removed items still inside the HNSW graph
        self._seq = 0  # last log record applied
        self._next_id = 0

    def describe(self):
        """What was built, for start-up messages."""
        return (f"faiss gallery {self.directory} ({self.config.method}, {self.config.metric}, "
                f"dim {self.config.dim})")

    # -- public ------------------------------------------------------------------------------

    def add(self, vectors, labels, docs=None):
        """Append items (no rebuild); returns their new ids. Durable once it returns."""
        codes = vectors_to_codes(vectors, self.config)
        labels = check_labels(labels, len(codes))
        docs = check_docs(docs, len(codes))
        if not len(codes):
            return []

        def record():
            ids = list(range(self._next_id, self._next_id + len(codes)))
            return {"seq": self._seq + 1, "op": "add", "ids": ids, "labels": labels, "docs": docs}, codes

        return self._write(record)["ids"]

    def remove(self, ids=None, labels=None):
        """Remove items by id and/or by label; returns how many were removed (unknown ones count 0)."""
        wanted_ids, wanted_labels = check_removal(ids, labels)

        def record():
            rows, found = self._items.find(wanted_ids)
            rows = np.union1d(rows[found], self._items.live_rows_with_labels(wanted_labels)).astype(np.int64)
            if not rows.size:
                return None, None
            return {"seq": self._seq + 1, "op": "remove", "ids": self._items.ids[rows].tolist()}, None

        header = self._write(record)
        return 0 if header is None else len(header["ids"])

    def search(self, queries, k=5):
        """For each query, up to k hits best first (never removed items, never more than exist)."""
        codes = vectors_to_codes(queries, self.config, what="queries")
        k = positive_int(k, "k")
        with self._lock:
            self._follow()
            wanted = min(k, self._items.live_count())
            if wanted == 0 or not len(codes):
                return [[] for _ in codes]
            distances, ids, rows, found = self._search_live(codes, wanted)
            scores = scores_from_distances(distances, self.config)
            return [self._hits(scores[q], ids[q], rows[q], found[q], wanted) for q in range(len(codes))]

    def count(self):
        with self._lock:
            self._follow()
            return self._items.live_count()

    def stats(self):
        with self._lock:
            self._follow()
            live = self._items.live_rows()
            return {"count": len(live),
                    "labels": dict(sorted(Counter(self._items.labels[row] for row in live).items())),
                    "dim": self.config.dim, "method": self.config.method, "metric": self.config.metric,
                    "fingerprint": self.config.fingerprint, "backend": self.backend}

    def items(self, batch=4096):
        """Every live item as (ids, vectors, labels, docs) chunks, for migration (hamming: 0/1 vectors)."""
        with self._lock:
            self._follow()
            rows = self._items.live_rows()
            ids, codes = self._items.ids[rows], self._items.codes[rows]
            labels = [self._items.labels[row] for row in rows]
            docs = [self._items.docs[row] for row in rows]
        for start in range(0, len(rows), batch):
            chunk = codes[start:start + batch]
            vectors = np.unpackbits(chunk, axis=1).astype(np.float32) if self.config.binary else chunk
            yield ids[start:start + batch], vectors, labels[start:start + batch], docs[start:start + batch]

    def check_fingerprint(self, expected):
        """Raise GalleryError naming the differing keys unless the gallery was built as `expected` says."""
        check_fingerprint(self.directory, self.config.fingerprint, expected)

    def save(self):
        """Compaction: write the full snapshot atomically, then start an empty log."""
        with self._lock:
            self._check_writable()
            with self._flock(fcntl.LOCK_EX):
                self._catch_up()
                if self.config.method != "HNSW32":
                    self._items.compact()  # removed rows are already gone from these indexes
                write_snapshot(self.directory, self._snapshot_arrays())
                start_new_log(self.directory)
                self._log_identity, self._log_end = log_identity(os.stat(self._log_path)), 0

    def close(self):
        """Release the files. Does not save: every returned change is in the log already."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._lock_fd)
            _open_galleries.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- following other processes --------------------------------------------------------------

    def _after_fork(self):
        self._lock = threading.Lock()
        if not self._closed:
            os.close(self._lock_fd)  # the parent's handle: flock would treat both processes as one holder
            self._lock_fd = _open_lock_file(self.directory, self.read_only)

    @contextmanager
    def _flock(self, mode):
        fcntl.flock(self._lock_fd, mode)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _log_stat(self):
        try:
            return os.stat(self._log_path)
        except FileNotFoundError:
            raise GalleryError(f"{self.directory}: {WAL} is missing; refusing to go on without the changes "
                               f"it may hold") from None

    def _follow(self):
        """Apply what other processes changed since this one last looked (the caller holds self._lock)."""
        self._check_open()
        stat = self._log_stat()
        if log_identity(stat) == self._log_identity and stat.st_size == self._log_end:
            return
        with self._flock(fcntl.LOCK_SH):
            self._catch_up()

    def _catch_up(self):
        """Under the LOCK: apply the new log records, or reload if the log was replaced."""
        stat = self._log_stat()
        if log_identity(stat) != self._log_identity or stat.st_size < self._log_end:
            self._reload()
        elif stat.st_size > self._log_end:
            records, self._log_end = read_wal(self._log_path, self._log_end)
            self._replay(self._log_path, records)

    def _reload(self):
        """Under the LOCK: the snapshot, then the whole log."""
        snapshot_path = self.directory / SNAPSHOT
        if not snapshot_path.exists():
            raise GalleryError(f"{self.directory}: {SNAPSHOT} is missing; refusing to go on rather than start empty")
        meta, records, arrays = read_snapshot(snapshot_path)
        try:
            config = gallery_config(**meta["config"])
        except (GalleryError, TypeError, KeyError) as e:
            raise GalleryError(f"{snapshot_path}: snapshot settings are invalid: {e}") from None
        if self.config is not None and config != self.config:
            raise GalleryError(f"{self.directory}: the gallery was replaced by one with other settings "
                               f"({short(repr(config))}); reopen it")
        self.config = config
        identity = log_identity(self._log_stat())
        self._restore(snapshot_path, meta, records, arrays)
        wal_records, self._log_end = read_wal(self._log_path)
        self._log_identity = identity
        self._replay(self._log_path, wal_records)

    def _write(self, make_record):
        """Catch up, then append the record make_record() builds from the current state, and apply it.
        Returns its header (None when make_record found nothing to change)."""
        with self._lock:
            self._check_writable()
            with self._flock(fcntl.LOCK_EX):
                self._catch_up()
                if self._log_stat().st_size > self._log_end:
                    cut_log(self._log_path, self._log_end)  # a crashed writer's torn record
                header, codes = make_record()
                if header is None:
                    return None
                record = encode_record(header, b"" if codes is None else codes.tobytes())
                append_record(self._log_path, record, self._log_end)
                self._log_end += len(record)
                self._apply(header, codes)
                return header

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
        return {"meta": json_array(meta), "ids": self._items.ids[:n], "codes": self._items.codes[:n],
                "live": self._items.live[:n],
                "records": json_array({"labels": self._items.labels, "docs": self._items.docs}),
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
            raise GalleryError(f"{path}: snapshot's faiss index cannot be loaded: {short(str(e), 200)}") from None
        if index.ntotal != n or index.d != self.config.dim:
            raise GalleryError(f"{path}: snapshot's faiss index holds {index.ntotal} vectors of dimension {index.d}, "
                               f"but the snapshot has {n} items of dimension {self.config.dim}")
        self._items = Items(self.config, ids, codes, records["labels"], records["docs"], live)
        self._index = index
        self._trained_ivf = bool(meta["trained_ivf"])
        self._tombstones = n - int(live.sum())
        self._seq = int(meta["seq"])
        self._next_id = int(meta["next_id"])

    def _replay(self, path, records):
        """Apply the log records newer than the state; replaying twice changes nothing."""
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


def holds_faiss_gallery(directory):
    """Whether `directory` has a gallery's files (then it is opened, never silently rebuilt)."""
    return any((Path(directory) / name).exists() for name in (SNAPSHOT, WAL))


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
    gallery = Gallery(directory, config, read_only=False)
    try:
        with gallery._lock, gallery._flock(fcntl.LOCK_EX):
            existing = [name for name in (SNAPSHOT, WAL) if (directory / name).exists()]
            if existing and not overwrite:
                raise GalleryError(f"{directory} already holds a gallery ({', '.join(existing)}); open it with "
                                   f"open_gallery, or pass overwrite=True to replace it")
            (directory / SNAPSHOT).unlink(missing_ok=True)  # first: without it the directory is no gallery
            start_new_log(directory)
            write_snapshot(directory, gallery._snapshot_arrays())
            gallery._log_identity, gallery._log_end = log_identity(os.stat(directory / WAL)), 0
    except BaseException:
        gallery.close()
        raise
    return gallery


def open_gallery(directory, expected_fingerprint=None, read_only=False):
    """Open a gallery: load the snapshot, replay the log, drop a torn final record.

    With expected_fingerprint, refuse a gallery built with another feature model or preprocessing.
    read_only=True changes no file (for tools that only look); it still follows other processes'
    changes like any opener."""
    directory = Path(directory)
    snapshot_path, wal_path = directory / SNAPSHOT, directory / WAL
    if not snapshot_path.exists():
        if wal_path.exists():
            raise GalleryError(f"{directory}: {WAL} exists but {SNAPSHOT} is missing; refusing to open rather "
                               f"than start empty")
        raise GalleryError(f"{directory} holds no gallery (no {SNAPSHOT}); create one with create_gallery")
    gallery = Gallery(directory, None, read_only)
    try:
        with gallery._lock, gallery._flock(fcntl.LOCK_SH if read_only else fcntl.LOCK_EX):
            gallery._reload()
            if not read_only:
                (directory / (SNAPSHOT + ".tmp")).unlink(missing_ok=True)  # left by a crash mid-save
                if gallery._log_stat().st_size > gallery._log_end:
                    cut_log(wal_path, gallery._log_end)
        if expected_fingerprint is not None:
            gallery.check_fingerprint(expected_fingerprint)
    except BaseException:
        gallery.close()
        raise
    return gallery

