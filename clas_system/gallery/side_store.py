"""The side store: small named blobs per gallery item (a thumbnail, the kept region, keypoints...),
beside the vectors, shared by every process that opens the gallery and deleted with the item.

    gallery.side.put("thumbnail", ids, [jpeg_bytes, ...])   # durable once it returns
    gallery.side.get("thumbnail", ids)                      # [bytes or None per id]
    gallery.side.delete(ids)                                # every item kind of these ids
    gallery.side.ids("review.entry", offset=0, limit=50)    # keys of one kind, increasing
    gallery.side.count("thumbnail"), gallery.side.usage()   # {kind: {"count", "bytes"}}

A blob is keyed by (kind, id): putting one again replaces it. A kind is 1-32 characters of
[a-z0-9_.]; kinds starting with "review." hold the review queue's entries, whose ids are no
gallery ids, so removing an item leaves them. Each blob is at most MAX_BLOB_BYTES (a Milvus
VARCHAR holds its base64); a bigger one is refused naming it.

Ordering against the item's own change: the gallery first makes the item (add), then puts its
blobs; it first removes the item, then deletes its blobs. A crash in between leaves an item
without blobs (get answers None) or blobs of an id that is never used again (ids are not
reused), never a blob shown for another item.

faiss backend: SqliteSideStore, one SQLite file (side.sqlite) in the gallery directory, in WAL
mode with synchronous=FULL: a put or delete is fsync'd before it returns, survives kill -9, and
is seen by every process (gunicorn workers, the CLI) on its next read. Milvus backend:
milvus_side.MilvusSideStore, a second collection `<collection>__side`, shared by every replica.
"""
import os
import re
import sqlite3
import threading
from typing import Dict, List, Optional, Protocol

import numpy as np

from ..errors import GalleryError, GalleryInputError

SIDE_FILE = "side.sqlite"
MAX_BLOB_BYTES = 48_000  # its base64 fits a Milvus VARCHAR (65 535)
KIND_PATTERN = re.compile(r"[a-z0-9_.]{1,32}")
ITEM_KINDS_EXCLUDE = "review."  # kinds with this prefix are not tied to gallery items
BUSY_TIMEOUT_S = 30


class SideStore(Protocol):
    def put(self, kind: str, ids, blobs) -> None: ...
    def get(self, kind: str, ids) -> List[Optional[bytes]]: ...
    def delete(self, ids, kinds=None) -> int: ...
    def ids(self, kind: str, offset: int = 0, limit: int = 100) -> List[int]: ...
    def count(self, kind: str) -> int: ...
    def usage(self) -> Dict[str, dict]: ...


def check_kind(kind):
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise GalleryInputError(f"side store kind {kind!r}: use 1-32 characters of a-z, 0-9, '_' and '.'", "kind")
    return kind


def check_blobs(ids, blobs):
    """(ids, blobs) as lists of ints and bytes (None entries skipped), one blob per id, each within
    MAX_BLOB_BYTES."""
    ids, blobs = [int(i) for i in np.asarray(ids, np.int64).reshape(-1)], list(blobs)
    if len(ids) != len(blobs):
        raise GalleryInputError(f"side store: {len(ids)} ids but {len(blobs)} blobs; pass one blob per id", "blobs")
    kept = []
    for i, (key, blob) in enumerate(zip(ids, blobs)):
        if blob is None:
            continue
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise GalleryInputError(f"side store blobs[{i}] must be bytes, got {type(blob).__name__}", "blobs", i)
        if len(blob) > MAX_BLOB_BYTES:
            raise GalleryInputError(f"side store blobs[{i}] is {len(blob)} bytes; at most {MAX_BLOB_BYTES} are kept "
                                    f"per blob", "blobs", i)
        kept.append((key, bytes(blob)))
    return kept


def id_list(ids):
    return [int(i) for i in np.asarray(ids, np.int64).reshape(-1)]


def remove_side_files(directory):
    """Delete a faiss gallery's side store (when the gallery is replaced by a new one)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(os.path.join(directory, SIDE_FILE + suffix))
        except FileNotFoundError:
            pass


class SqliteSideStore:
    """The faiss backend's side store: side.sqlite in the gallery directory (see the module doc).
    One connection per process (made after any fork) and per store, used under a lock."""

    def __init__(self, directory, read_only=False):
        self.path = os.path.join(directory, SIDE_FILE)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._connections = {}  # pid -> sqlite3.Connection

    def _connection(self):
        pid = os.getpid()
        connection = self._connections.get(pid)
        if connection is None:
            connection = self._connect()
            self._connections = {pid: connection}  # a parent's connection is never used (nor closed) here
        return connection

    def _connect(self):
        try:
            if self.read_only:
                connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                             check_same_thread=False)
            else:
                connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                                             isolation_level=None)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("CREATE TABLE IF NOT EXISTS blobs (kind TEXT NOT NULL, id INTEGER NOT NULL, "
                                   "data BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID")
                connection.execute("CREATE INDEX IF NOT EXISTS blobs_by_id ON blobs (id)")
            return connection
        except sqlite3.Error as e:
            raise GalleryError(f"{self.path}: cannot open the side store ({e})") from None

    def _run(self, what, work, default=None):
        """work(connection) under this store's lock; SQLite's errors as GalleryError naming the file.
        Before the first put there is no file: a read answers `default` (and makes none)."""
        with self._lock:
            if default is not None and not os.path.exists(self.path):
                return default
            try:
                return work(self._connection())
            except sqlite3.Error as e:
                raise GalleryError(f"{self.path}: side store {what} failed ({e})") from None

    def put(self, kind, ids, blobs):
        """Store (replace) one blob per id under `kind`; durable once this returns."""
        rows = [(check_kind(kind), key, blob) for key, blob in check_blobs(ids, blobs)]
        if self.read_only:
            raise GalleryError(f"{self.path}: the gallery was opened read_only; open it without read_only to change it")
        if rows:
            self._run("put", lambda c: _in_transaction(c, lambda: c.executemany(
                "INSERT OR REPLACE INTO blobs (kind, id, data) VALUES (?, ?, ?)", rows)))  # no default: a write

    def get(self, kind, ids):
        """The blob of each id under `kind`, None where there is none."""
        check_kind(kind)
        wanted = id_list(ids)
        found = self._run("get", lambda c: dict(_chunked_select(c, "SELECT id, data FROM blobs WHERE kind = ? AND "
                                                                     "id IN ({})", [kind], wanted)), {})
        return [found.get(key) for key in wanted]

    def delete(self, ids, kinds=None):
        """Delete the blobs of these ids: of the given kinds, or of every item kind. Returns how many went."""
        wanted = id_list(ids)
        if not wanted:
            return 0
        if kinds is None:
            where, arguments = "kind NOT LIKE ?", [ITEM_KINDS_EXCLUDE + "%"]
        else:
            kinds = [check_kind(kind) for kind in kinds]
            where, arguments = f"kind IN ({', '.join('?' * len(kinds))})", kinds
        return self._run("delete", lambda c: _in_transaction(c, lambda: sum(
            c.execute(f"DELETE FROM blobs WHERE {where} AND id IN ({', '.join('?' * len(chunk))})",
                      arguments + chunk).rowcount for chunk in _chunks(wanted))), 0)

    def ids(self, kind, offset=0, limit=100):
        """Ids holding a blob of `kind`, in increasing order, from `offset` on."""
        check_kind(kind)
        rows = self._run("list", lambda c: c.execute("SELECT id FROM blobs WHERE kind = ? ORDER BY id LIMIT ? OFFSET ?",
                                                     (kind, int(limit), int(offset))).fetchall(), [])
        return [row[0] for row in rows]

    def count(self, kind):
        check_kind(kind)
        return self._run("count", lambda c: c.execute("SELECT count(*) FROM blobs WHERE kind = ?",
                                                      (kind,)).fetchone()[0], 0)

    def usage(self):
        """{kind: {"count", "bytes"}} of what the store holds."""
        rows = self._run("usage", lambda c: c.execute("SELECT kind, count(*), sum(length(data)) FROM blobs "
                                                      "GROUP BY kind ORDER BY kind").fetchall(), [])
        return {kind: {"count": count, "bytes": size} for kind, count, size in rows}

    def close(self):
        with self._lock:
            connection = self._connections.pop(os.getpid(), None)
            self._connections = {}
        if connection is not None:
            connection.close()


SQLITE_CHUNK = 500  # ids per statement, under SQLite's bound-parameter limit


def _chunks(values):
    return [values[i:i + SQLITE_CHUNK] for i in range(0, len(values), SQLITE_CHUNK)]


def _chunked_select(connection, statement, arguments, ids):
    for chunk in _chunks(ids):
        yield from connection.execute(statement.format(", ".join("?" * len(chunk))), arguments + chunk)


def _in_transaction(connection, work):
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result
