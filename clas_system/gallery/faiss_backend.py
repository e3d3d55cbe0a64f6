"""The faiss backend: an embedded gallery in one directory, shared by every process on the machine.

    gallery = create_faiss_gallery("gallery/", dim=512, method="HNSW32", metric="IP",
                                   fingerprint={"model": "PPLCNetV2_base", "resize": 224})
    ids = gallery.add(vectors, labels)      # durable once it returns
    gallery.search(queries, k=5)            # [[Hit(id, label, doc, score), ...] per query]
    gallery.remove(labels=["cat"])          # or ids=[...]; returns how many were removed
    gallery.save()                          # compaction: snapshot, then an empty log
    gallery.close()

Methods: "Flat" (exact), "HNSW32", "IVF" (IVF{nlist},Flat, or IVF{nlist},PQ{pq_size}; BIVF{nlist}
for hamming); faiss_state holds the items and the index and how records change them.

Files in the gallery directory: gallery.npz (the snapshot), gallery.wal (the write-ahead log),
LOCK, and side.sqlite (the side store's blobs per item: thumbnails, kept regions; side_store). Any number of processes may open the same directory (gunicorn workers, a CLI):
  - a change takes LOCK exclusively (flock), first applies the records other processes appended,
    then appends its own record, fsyncs it, applies it and lets go; ids are therefore unique;
  - every call first stats the log (one syscall); when it grew, the new records are read under a
    shared LOCK and applied, so each process sees every acknowledged change on its next call;
  - compaction (save) writes the snapshot and replaces the log with an empty file under the
    exclusive LOCK; the log's new inode tells the others to reload the snapshot.
The LOCK file is flock'd, so this holds on one machine's local filesystem (not across NFS hosts).

The items (float32 vectors, packed bits for hamming) are kept beside the faiss index as the source
of truth for IVF training and HNSW rebuilds; a Flat gallery holds its vectors twice in memory.
"""
import fcntl
import os
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import GalleryError, GalleryUnavailable, short
from .config import check_fingerprint, gallery_config
from .faiss_state import FaissState
from .interface import CheckedCalls, check_docs, check_labels
from .log import WAL, append_record, cut_log, encode_record, log_identity, read_wal, start_new_log
from .side_store import SqliteSideStore, remove_side_files
from .snapshot import SNAPSHOT, read_snapshot, write_snapshot
from .vectors import vectors_to_codes

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


class FaissGallery(CheckedCalls):
    """An open gallery directory. Use create_faiss_gallery / open_faiss_gallery rather than this
    constructor.

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
        self._state = FaissState(config) if config is not None else None  # else the first _reload reads it
        self.side = SqliteSideStore(self.directory, read_only)
        _open_galleries.add(self)

    def describe(self):
        """What was built, for start-up messages."""
        return (f"faiss gallery {self.directory} ({self.config.method}, {self.config.metric}, "
                f"dim {self.config.dim})")

    # -- the interface (arguments already checked by CheckedCalls) ---------------------------

    def _add(self, codes, labels, docs):
        return self._write(lambda: self._state.add_record(codes, labels, docs))["ids"]

    def _remove(self, ids, labels):
        header = self._write(lambda: self._state.remove_record(ids, labels))
        return [] if header is None else header["ids"]

    def copy_items(self, ids, vectors, labels, docs, added_at, next_id=0):
        """Add another gallery's items under their own ids (increasing, above every id here), with
        their added_at, and reserve the ids below next_id (a re-embedded gallery keeps its ids)."""
        codes = vectors_to_codes(vectors, self.config) if len(ids) else np.empty((0, self.config.code_width),
                                                                                self.config.code_dtype)
        labels, docs = check_labels(labels, len(codes)), check_docs(docs, len(codes))
        return self._write(lambda: self._state.copy_record(ids, codes, labels, docs, list(added_at), next_id))

    @contextmanager
    def held(self):
        """Hold the gallery still (no process changes it until the block ends); yields every live
        Item and the next id it would give."""
        with self._lock:
            self._check_writable()
            with self._flock(fcntl.LOCK_EX):
                self._catch_up()
                items, _total = self._state.list_items(0, max(1, self._state.items.n))
                yield items, self._state.next_id

    def _relabel(self, ids, labels, new_label):
        header = self._write(lambda: self._state.relabel_record(ids, labels, new_label))
        return 0 if header is None else len(header["ids"])

    def _list_items(self, offset, limit, label, text, after):
        with self._lock:
            self._follow()
            return self._state.list_items(offset, limit, label, text, after)

    def _search(self, codes, k):
        with self._lock:
            self._follow()
            return self._state.search(codes, k)

    def _vectors(self, ids):
        with self._lock:
            self._follow()
            rows, found = self._state.items.find(ids)
            codes = self._state.items.codes[rows[found]]
        vectors = np.unpackbits(codes, axis=1).astype(np.float32) if self.config.binary else codes
        return dict(zip(ids[found].tolist(), vectors))

    def revision(self):
        """Which state this process holds: the log it follows and how far (a change by any process
        moves it on this process's next call)."""
        with self._lock:
            self._follow()
            return self._log_identity, self._log_end

    def count(self):
        with self._lock:
            self._follow()
            return self._state.items.live_count()

    def stats(self):
        with self._lock:
            self._follow()
            return {"count": self._state.items.live_count(), "labels": self._state.label_counts(),
                    "dim": self.config.dim, "method": self.config.method, "metric": self.config.metric,
                    "fingerprint": self.config.fingerprint, "backend": self.backend}

    def items(self, batch=4096):
        """Every live item as (ids, vectors, labels, docs) chunks, for migration (hamming: 0/1 vectors)."""
        with self._lock:
            self._follow()
            ids, codes, labels, docs = self._state.live_items()
        for start in range(0, len(ids), batch):
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
                self._state.compact()
                write_snapshot(self.directory, self._state.snapshot_arrays())
                start_new_log(self.directory)
                self._log_identity, self._log_end = log_identity(os.stat(self._log_path)), 0

    def close(self):
        """Release the files. Does not save: every returned change is in the log already."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._lock_fd)
            self.side.close()
            _open_galleries.discard(self)

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
            self._state.replay(self._log_path, records)

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
        self._state = FaissState.restored(config, snapshot_path, meta, records, arrays)
        wal_records, self._log_end = read_wal(self._log_path)
        self._log_identity = identity
        self._state.replay(self._log_path, wal_records)

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
                self._state.apply(header, codes)
                return header

    def _check_open(self):
        if self._closed:
            raise GalleryUnavailable(f"{self.directory}: the gallery is closed")

    def _check_writable(self):
        self._check_open()
        if self.read_only:
            raise GalleryError(f"{self.directory}: the gallery was opened read_only; "
                               f"open it without read_only to change it")


def holds_faiss_gallery(directory):
    """Whether `directory` has a gallery's files (then it is opened, never silently rebuilt)."""
    return any((Path(directory) / name).exists() for name in (SNAPSHOT, WAL))


def create_faiss_gallery(directory, dim, method="HNSW32", metric="IP", fingerprint=None, nlist=256, pq_size=None,
                   nprobe=None, overwrite=False):
    """A new, empty gallery in `directory`, open for writing. `fingerprint` (a JSON-serialisable dict
    describing the feature model and preprocessing) is checked by open_faiss_gallery(expected_fingerprint=...).
    nlist / pq_size / nprobe apply to method "IVF" (nprobe defaults to nlist // 8)."""
    config = gallery_config(dim, method, metric, fingerprint, nlist, pq_size, nprobe)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GalleryError(f"cannot create gallery directory {directory}: {e}") from None
    gallery = FaissGallery(directory, config, read_only=False)
    try:
        with gallery._lock, gallery._flock(fcntl.LOCK_EX):
            existing = [name for name in (SNAPSHOT, WAL) if (directory / name).exists()]
            if existing and not overwrite:
                raise GalleryError(f"{directory} already holds a gallery ({', '.join(existing)}); open it with "
                                   f"open_faiss_gallery, or pass overwrite=True to replace it")
            (directory / SNAPSHOT).unlink(missing_ok=True)  # first: without it the directory is no gallery
            remove_side_files(directory)
            start_new_log(directory)
            write_snapshot(directory, gallery._state.snapshot_arrays())
            gallery._log_identity, gallery._log_end = log_identity(os.stat(directory / WAL)), 0
    except BaseException:
        gallery.close()
        raise
    return gallery


def open_faiss_gallery(directory, expected_fingerprint=None, read_only=False):
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
        raise GalleryError(f"{directory} holds no gallery (no {SNAPSHOT}); create one with create_faiss_gallery")
    gallery = FaissGallery(directory, None, read_only)
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

