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
from collections import Counter
from contextlib import contextmanager

import numpy as np

from params.gallery import MILVUS_CONSISTENCY_LEVELS, collection_name_problem

from ..errors import GalleryError, GalleryUnavailable
from .config import check_fingerprint, gallery_config
from .interface import CheckedCalls, Hit
from .milvus_calls import failure_text, call_failures, import_pymilvus, deadline

META_PROPERTY = "clas_gallery.meta"
FORMAT_VERSION = 1
MILVUS_METRICS = {"IP": "IP", "L2": "L2"}
MAX_TEXT_BYTES = 65535  # Milvus's VARCHAR limit
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

    def describe(self):
        return (f"milvus gallery {self.settings.collection} at {self.settings.uri} ({self.settings.index_type}, "
                f"{self.config.metric}, dim {self.config.dim}, consistency {self.settings.consistency_level})")

    # -- public ------------------------------------------------------------------------------

    def _add(self, codes, labels, docs):
        """Ids assigned by Milvus; acknowledged by Milvus once this returns."""
        ids = []
        for start in range(0, len(codes), INSERT_BATCH):
            rows = [{"vector": codes[i], "label": labels[i], "doc": docs[i]}
                    for i in range(start, min(start + INSERT_BATCH, len(codes)))]
            with self._errors("insert"):
                result = self._client().insert(self.settings.collection, rows, **deadline(self.settings))
            ids.extend(int(i) for i in result["ids"])
        self._changes += 1
        return ids

    def _remove(self, wanted_ids, wanted_labels):
        clauses = []
        if len(wanted_ids):
            clauses.append(f"id in {wanted_ids.tolist()}")
        if wanted_labels:
            clauses.append(f"label in {_string_list(wanted_labels)}")
        if not clauses:
            return 0
        expression = " or ".join(clauses)
        removed = 0
        while True:  # ask which exist first: Milvus counts a delete by id whether or not the id exists
            with self._errors("remove"):
                found = self._client().query(self.settings.collection, filter=expression, output_fields=["id"],
                                             limit=MAX_TOP_K, consistency_level="Strong", **deadline(self.settings))
                if not found:
                    return removed
                self._client().delete(self.settings.collection, ids=[row["id"] for row in found],
                                      **deadline(self.settings))
            removed += len(found)
            self._changes += 1

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
        with self._errors("count"):
            rows = self._client().query(self.settings.collection, filter="", output_fields=["count(*)"],
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
        self.settings = dataclasses.replace(self.settings, collection=collection)
        return True

    def drop(self):
        """Delete the collection and everything in it."""
        with self._errors("drop"):
            self._client().drop_collection(self.settings.collection, **deadline(self.settings, slow=True))

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


def _string_list(values):
    """A Milvus expression list of string literals (JSON's quoting is Milvus's)."""
    return "[" + ", ".join(json.dumps(value, ensure_ascii=False) for value in values) + "]"


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


def _meta(dim, metric, fingerprint):
    return json.dumps({"format": FORMAT_VERSION, "dim": dim, "metric": metric, "fingerprint": fingerprint})


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
            _create_collection(gallery._client(), settings, config, overwrite, gallery._where())
    except BaseException:
        gallery.close()
        raise
    gallery._opened = True
    return gallery


def _create_collection(client, settings, config, overwrite, where):
    pymilvus = import_pymilvus()
    if client.has_collection(settings.collection, **deadline(settings)):
        if not overwrite:
            raise GalleryError(f"{where} already holds a gallery; open it, or pass overwrite=True to replace it")
        client.drop_collection(settings.collection, **deadline(settings, slow=True))
    schema = pymilvus.MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=config.dim)
    schema.add_field("label", pymilvus.DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("doc", pymilvus.DataType.VARCHAR, max_length=MAX_TEXT_BYTES, nullable=True)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=settings.index_type,
                    metric_type=MILVUS_METRICS[config.metric], params=dict(settings.index_params))
    client.create_collection(settings.collection, schema=schema, index_params=index,
                             consistency_level=settings.consistency_level,
                             properties={META_PROPERTY: _meta(config.dim, config.metric, config.fingerprint)},
                             **deadline(settings, slow=True))


def open_milvus_gallery(settings, expected_fingerprint=None):
    """Open an existing collection made by create_milvus_gallery (loading it for search)."""
    settings = check_milvus_settings(settings)
    gallery = MilvusGallery(settings, None)
    try:
        with gallery._errors("open"):
            description = _describe(gallery._client(), settings, gallery._where())
            gallery.config = _config_from_properties(description.get("properties") or {}, gallery._where())
            gallery._client().load_collection(settings.collection, **deadline(settings, slow=True))
        if expected_fingerprint is not None:
            gallery.check_fingerprint(expected_fingerprint)
    except BaseException:
        gallery.close()
        raise
    gallery._opened = True
    return gallery


def _describe(client, settings, where):
    if not client.has_collection(settings.collection, **deadline(settings)):
        raise GalleryError(f"{where} holds no gallery (no such collection); create one with create_milvus_gallery")
    return client.describe_collection(settings.collection, **deadline(settings))


def _config_from_properties(properties, where):
    if META_PROPERTY not in properties:
        raise GalleryError(f"{where} was not made by this package (no {META_PROPERTY} property); refusing to use it")
    try:
        meta = json.loads(properties[META_PROPERTY])
        if meta.get("format") != FORMAT_VERSION:
            raise GalleryError(f"{where}: gallery format {meta.get('format')!r} is not the supported {FORMAT_VERSION}")
        return gallery_config(meta["dim"], "Flat", meta["metric"], meta["fingerprint"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise GalleryError(f"{where}: its {META_PROPERTY} property is unreadable ({e})") from None
