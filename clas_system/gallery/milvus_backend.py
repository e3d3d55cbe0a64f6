"""The milvus backend: a gallery in a Milvus collection, shared by any number of processes and machines.

    settings = MilvusSettings(uri="http://127.0.0.1:19530", collection="products")   # params.gallery
    gallery = create_milvus_gallery(settings, dim=512, metric="IP", fingerprint={...})
    gallery.add(vectors, labels, docs)      # ids come from Milvus (auto_id)
    gallery.search(queries, k=5)            # [[Hit(id, label, doc, score), ...] per query]
    gallery.remove(labels=["cat"])          # or ids=[...]; returns how many were removed

`uri` is a Milvus Lite file (one process only: Milvus Lite locks it), a Milvus Lite standalone
server (`python -m milvus_lite server --data-dir D --port P`, then http://127.0.0.1:P), or a Milvus
server or cluster. The collection holds id (INT64, primary, assigned by Milvus), vector
(FLOAT_VECTOR), label and doc (VARCHAR); the gallery's metric and feature fingerprint are kept
in the collection's properties, so a server with another feature model refuses it as the faiss
backend does. Scores as faiss's: IP as is, L2 negated squared distance, higher is better.
Milvus Lite has no binary vectors, so metric hamming is faiss-only.

Visibility of changes across processes follows consistency_level: "Strong" (the default) makes
every acknowledged add/remove visible to the next search from any process; "Bounded" or
"Eventually" trade that for latency on a busy cluster.

pymilvus is imported when a Milvus gallery is opened (`pip install '.[milvus]'`). Its gRPC
channel does not survive fork, so each process makes its own client on first use.

Every call has a deadline, settings.timeout_s (settings.load_timeout_s for the calls that wait
while Milvus builds or loads a collection): a dead server, or one that accepts connections but
never answers, raises GalleryUnavailable once it has passed. A failed call also drops the
process's client, so the next call connects afresh and serving resumes when Milvus is back.
"""
import dataclasses
import itertools
import json
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np

from params.gallery import MILVUS_CONSISTENCY_LEVELS, collection_name_problem

from ..errors import GalleryError, GalleryUnavailable
from .config import check_fingerprint, gallery_config
from .interface import CheckedCalls, Hit, Item
from .milvus_calls import failure_text, call_failures, import_pymilvus, deadline
from .milvus_schema import (MAX_TEXT_BYTES, MILVUS_METRICS, config_from_properties, create_collection,
                            describe_collection, like_escaped, selection)
from .milvus_side import MilvusSideStore, side_collection

MAX_TOP_K = 16384  # Milvus's limit on k and on one query's result window
INSERT_BATCH = 4096  # rows per insert call, well under gRPC's message size at 512-d
_aliases = itertools.count()


def check_milvus_settings(settings):
    if not isinstance(settings.uri, str) or not settings.uri:
        raise GalleryError(f"milvus uri must be a non-empty string, got {settings.uri!r}")
    problem = collection_name_problem(settings.collection)
    if problem is not None:
        raise GalleryError(f"milvus collection {problem}")
    if settings.consistency_level not in MILVUS_CONSISTENCY_LEVELS:
        raise GalleryError(f"milvus consistency_level {settings.consistency_level!r}; allowed: "
                           f"{', '.join(MILVUS_CONSISTENCY_LEVELS)}")
    return settings


class MilvusGallery(CheckedCalls):
    """An open Milvus collection. Use create_milvus_gallery / open_milvus_gallery.

    Holds no gallery state of its own: every call asks Milvus, so every process and server
    pointed at the collection sees the same items."""

    backend = "milvus"
    max_text_bytes = MAX_TEXT_BYTES
    max_k = MAX_TOP_K

    def __init__(self, settings, config):
        self.settings = settings
        self.config = config
        self._clients = {}  # pid -> MilvusClient: one per process, made after any fork
        self._clients_lock = threading.Lock()
        self._closed = False
        self._changes = 0  # changes made through this object; other clients' are not seen here
        self._opened = False  # set once the collection is made or opened: later connections load it
        self._has_added_at = True  # collections made before items recorded when they were added lack the field
        self.side = MilvusSideStore(self)

    def describe(self):
        return (f"milvus gallery {self.settings.collection} at {self.settings.uri} ({self.settings.index_type}, "
                f"{self.config.metric}, dim {self.config.dim}, consistency {self.settings.consistency_level})")

    # -- public ------------------------------------------------------------------------------

    def _add(self, codes, labels, docs):
        """Ids assigned by Milvus; acknowledged by Milvus once this returns."""
        ids = []
        for start in range(0, len(codes), INSERT_BATCH):
            added_at = {"added_at": int(time.time() * 1000)} if self._has_added_at else {}
            rows = [{"vector": codes[i], "label": labels[i], "doc": docs[i], **added_at}
                    for i in range(start, min(start + INSERT_BATCH, len(codes)))]
            with self._errors("insert"):
                result = self._client().insert(self.settings.collection, rows, **deadline(self.settings))
            ids.extend(int(i) for i in result["ids"])
        self._changes += 1
        return ids

    def _remove(self, wanted_ids, wanted_labels):
        expression = selection(wanted_ids, wanted_labels)
        removed = []
        while expression:  # ask which exist first: Milvus counts a delete by id whether or not the id exists
            with self._errors("remove"):
                found = self._client().query(self.settings.collection, filter=expression, output_fields=["id"],
                                             limit=MAX_TOP_K, consistency_level="Strong", **deadline(self.settings))
                if not found:
                    break
                self._client().delete(self.settings.collection, ids=[row["id"] for row in found],
                                      **deadline(self.settings))
            removed.extend(int(row["id"]) for row in found)
            self._changes += 1
        return removed

    def _relabel(self, wanted_ids, wanted_labels, new_label):
        """Each selected item upserted under its own id with the new label (Milvus has no partial update)."""
        chosen = selection(wanted_ids, wanted_labels)
        if not chosen:
            return 0
        expression = f"({chosen}) and label != {json.dumps(new_label, ensure_ascii=False)}"
        fields = ["id", "vector", "doc"] + (["added_at"] if self._has_added_at else [])
        relabelled = 0
        while True:
            with self._errors("relabel"):
                found = self._client().query(self.settings.collection, filter=expression, output_fields=fields,
                                             limit=INSERT_BATCH, consistency_level="Strong", **deadline(self.settings))
                if not found:
                    return relabelled
                rows = [{**{field: row[field] for field in fields}, "label": new_label} for row in found]
                self._client().upsert(self.settings.collection, rows, **deadline(self.settings))
            relabelled += len(found)
            self._changes += 1

    def _list_items(self, offset, limit, label, text, after):
        if offset + limit > MAX_TOP_K:
            raise GalleryError(f"offset + limit is {offset + limit}; Milvus answers at most {MAX_TOP_K} rows into "
                               f"one listing: pass after=<the last id of the previous page> instead of a deep offset")
        clauses = [] if label is None else [f"label == {json.dumps(label, ensure_ascii=False)}"]
        if text is not None:
            pattern = json.dumps("%" + like_escaped(text) + "%", ensure_ascii=False)
            clauses.append(f"(label like {pattern} or doc like {pattern})")
        total = self._count(" and ".join(clauses))
        if after is not None:
            clauses.append(f"id > {int(after)}")
        fields = ["id", "label", "doc"] + (["added_at"] if self._has_added_at else [])
        with self._errors("list"):
            rows = self._client().query(self.settings.collection, filter=" and ".join(clauses), output_fields=fields,
                                        offset=offset, limit=limit, consistency_level=self.settings.consistency_level,
                                        **deadline(self.settings))
        rows = sorted(rows, key=lambda row: row["id"])
        return [Item(int(row["id"]), row["label"], row.get("doc"),
                     None if row.get("added_at") is None else row["added_at"] / 1000) for row in rows], total

    def _search(self, codes, k):
        if not len(codes):
            return []
        params = {"metric_type": MILVUS_METRICS[self.config.metric], "params": dict(self.settings.search_params)}
        with self._errors("search"):
            results = self._client().search(self.settings.collection, data=list(codes), limit=k,
                                             output_fields=["label", "doc"], search_params=params,
                                             consistency_level=self.settings.consistency_level,
                                             **deadline(self.settings))
        sign = 1.0 if self.config.metric == "IP" else -1.0
        return [[Hit(int(hit["id"]), hit["entity"]["label"], hit["entity"].get("doc"), sign * float(hit["distance"]))
                 for hit in hits] for hits in results]

    def _vectors(self, ids):
        if not len(ids):
            return {}
        with self._errors("read vectors"):
            rows = self._client().query(self.settings.collection, filter=f"id in {ids.tolist()}",
                                        output_fields=["id", "vector"], consistency_level=self.settings.consistency_level,
                                        **deadline(self.settings))
        return {int(row["id"]): np.asarray(row["vector"], np.float32) for row in rows}

    def revision(self):
        """Changes made through this object only: what other servers change is not signalled (a
        caller caching derived values also bounds their age)."""
        return self._changes

    def count(self):
        return self._count("")

    def _count(self, expression):
        with self._errors("count"):
            rows = self._client().query(self.settings.collection, filter=expression, output_fields=["count(*)"],
                                        consistency_level="Strong", **deadline(self.settings))
        return int(rows[0]["count(*)"])

    def stats(self):
        labels = Counter(label for _ids, _vectors, chunk, _docs in self._chunks(["label"]) for label in chunk)
        return {"count": sum(labels.values()), "labels": dict(sorted(labels.items())), "dim": self.config.dim,
                "method": self.settings.index_type, "metric": self.config.metric,
                "fingerprint": self.config.fingerprint, "backend": self.backend}

    def items(self, batch=4096):
        """Every item as (ids, vectors, labels, docs) chunks, for migration."""
        for ids, vectors, labels, docs in self._chunks(["vector", "label", "doc"], batch):
            yield np.asarray(ids, np.int64), np.asarray(vectors, np.float32), labels, docs

    def check_fingerprint(self, expected):
        check_fingerprint(self._where(), self.config.fingerprint, expected)

    def save(self):
        """Ask Milvus to persist its growing segments (it already holds every acknowledged change)."""
        with self._errors("save"):
            self._client().flush(self.settings.collection, **deadline(self.settings, slow=True))

    def rename(self, collection):
        """Rename the collection to `collection` (and load it); False if that name is taken."""
        with self._errors("rename"):
            client = self._client()
            if client.has_collection(collection, **deadline(self.settings)):
                return False
            client.rename_collection(self.settings.collection, collection, **deadline(self.settings, slow=True))
            client.load_collection(collection, **deadline(self.settings, slow=True))
            if client.has_collection(side_collection(self.settings.collection), **deadline(self.settings)):
                client.rename_collection(side_collection(self.settings.collection), side_collection(collection),
                                         **deadline(self.settings, slow=True))
        self.settings = dataclasses.replace(self.settings, collection=collection)
        return True

    def drop(self):
        """Delete the collection and everything in it, its side store too."""
        with self._errors("drop"):
            self._client().drop_collection(self.settings.collection, **deadline(self.settings, slow=True))
            self._client().drop_collection(side_collection(self.settings.collection), **deadline(self.settings, slow=True))

    def close(self):
        with self._clients_lock:
            self._closed = True
            client = self._clients.pop(os.getpid(), None)
            self._clients.clear()  # other pids' clients belong to the parent process: never closed here
        if client is not None:
            client.close()

    # -- talking to Milvus ---------------------------------------------------------------------

    def _where(self):
        return f"milvus collection {self.settings.collection!r} at {self.settings.uri}"

    def _client(self):
        """This process's client, connecting when it has none (first use, or after a failure)."""
        pid = os.getpid()
        with self._clients_lock:
            self._check_open()
            if pid in self._clients:
                return self._clients[pid]
        # connect outside the lock: against a dead server every request thread would otherwise
        # wait for the connection deadline of each thread ahead of it
        fresh = connect(self.settings)
        if self._opened:
            self._load_after_reconnect(fresh)
        with self._clients_lock:
            kept = None if self._closed else self._clients.setdefault(pid, fresh)
        if kept is not fresh:
            fresh.close()
        self._check_open()
        return kept

    def _load_after_reconnect(self, client):
        """A restarted Milvus holds the collection released; load it again (a no-op when it is
        loaded). Within timeout_s: a collection still loading answers unavailable until it is."""
        try:
            client.load_collection(self.settings.collection, **deadline(self.settings))
        except call_failures() as e:
            client.close()
            raise GalleryUnavailable(f"{self._where()}: loading it after reconnecting failed: "
                                     f"{failure_text(e)}") from None

    def _check_open(self):
        if self._closed:
            raise GalleryUnavailable(f"{self._where()}: the gallery is closed")

    def _current_client(self):
        with self._clients_lock:
            return self._clients.get(os.getpid())

    def _drop_client(self, failed):
        """Forget this process's client after a failed call: its channel may be stuck on a server
        that went away, and the next call connects afresh. Not when another thread has already
        replaced the client that failed (`failed` None: the call made its own, drop the current)."""
        with self._clients_lock:
            if failed is not None and self._clients.get(os.getpid()) is not failed:
                return
            client = self._clients.pop(os.getpid(), None)
        if client is not None:
            client.close()

    @contextmanager
    def _errors(self, what):
        """Milvus's and gRPC's exceptions as GalleryUnavailable naming the collection and the call."""
        used = self._current_client()
        try:
            yield
        except call_failures() as e:
            self._drop_client(used)
            raise GalleryUnavailable(f"{self._where()}: {what} failed: {failure_text(e)}") from None

    def _chunks(self, fields, batch=4096):
        """(ids, vectors or None, labels, docs or None) per chunk of the whole collection."""
        with self._errors("read"):
            iterator = self._client().query_iterator(self.settings.collection, batch_size=batch, filter="",
                                                     output_fields=["id", *fields], consistency_level="Strong",
                                                     **deadline(self.settings))
        try:
            while True:
                with self._errors("read"):
                    rows = iterator.next()
                if not rows:
                    return
                yield ([row["id"] for row in rows], [row.get("vector") for row in rows],
                       [row["label"] for row in rows], [row.get("doc") for row in rows])
        finally:
            iterator.close()


def connect(settings):
    """A MilvusClient for settings.uri with a connection of its own; a server that does not answer
    within settings.timeout_s raises GalleryUnavailable naming it."""
    pymilvus = import_pymilvus()
    # an alias of its own: pymilvus shares one connection per uri by default, and closing a
    # failed client would then cut every other gallery of this process off that server
    kwargs = {"uri": settings.uri, "alias": f"clas_gallery-{os.getpid()}-{next(_aliases)}", **deadline(settings)}
    if settings.token:
        kwargs["token"] = settings.token
    try:
        return pymilvus.MilvusClient(**kwargs)
    except call_failures() as e:
        raise GalleryUnavailable(f"cannot connect to Milvus at {settings.uri}: {failure_text(e)}") from None


def holds_milvus_gallery(settings):
    check_milvus_settings(settings)
    gallery = MilvusGallery(settings, None)
    try:
        with gallery._errors("look up"):
            return gallery._client().has_collection(settings.collection, **deadline(settings))
    finally:
        gallery.close()


def create_milvus_gallery(settings, dim, metric="IP", fingerprint=None, overwrite=False):
    """A new, empty collection shaped for `dim`-d vectors compared by `metric` (IP or L2)."""
    settings = check_milvus_settings(settings)
    if metric == "hamming":
        raise GalleryError("metric 'hamming' is not available with the milvus backend (Milvus Lite has no binary "
                           "vectors); use the faiss backend")
    config = gallery_config(dim, "Flat", metric, fingerprint)
    gallery = MilvusGallery(settings, config)
    try:
        with gallery._errors("create"):
            create_collection(gallery._client(), settings, config, overwrite, gallery._where())
    except BaseException:
        gallery.close()
        raise
    gallery._opened = True
    return gallery


def open_milvus_gallery(settings, expected_fingerprint=None):
    """Open an existing collection made by create_milvus_gallery (loading it for search)."""
    settings = check_milvus_settings(settings)
    gallery = MilvusGallery(settings, None)
    try:
        with gallery._errors("open"):
            description = describe_collection(gallery._client(), settings, gallery._where())
            gallery.config = config_from_properties(description.get("properties") or {}, gallery._where())
            gallery._has_added_at = any(field["name"] == "added_at" for field in description.get("fields", ()))
            gallery._client().load_collection(settings.collection, **deadline(settings, slow=True))
        if expected_fingerprint is not None:
            gallery.check_fingerprint(expected_fingerprint)
    except BaseException:
        gallery.close()
        raise
    gallery._opened = True
    return gallery
