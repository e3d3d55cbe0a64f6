"""The Milvus backend's side store (see side_store for what it holds and promises): a second
collection, `<collection>__side`, shared by every server pointed at the gallery.

Rows: key (VARCHAR "kind:id", primary), kind, item (INT64, the id), data (the blob as base64 in a
VARCHAR, which is why blobs are bounded by side_store.MAX_BLOB_BYTES) and a 2-value vector
Milvus requires in every collection (unused). Made on first use; dropped with the gallery.
Every read is Strong: a put acknowledged by one server is read by the next request anywhere.
"""
import base64
import json

from .milvus_calls import deadline, import_pymilvus
from .side_store import ITEM_KINDS_EXCLUDE, check_blobs, check_kind, id_list

SIDE_SUFFIX = "__side"
MAX_DATA_CHARS = 65535
QUERY_CHUNK = 1000  # ids per query or delete expression


def side_collection(collection):
    return collection + SIDE_SUFFIX


class MilvusSideStore:
    """Talks to Milvus through its gallery's client and error handling (gallery._client, _errors)."""

    def __init__(self, gallery):
        self._gallery = gallery
        self._ready = False

    @property
    def collection(self):
        return side_collection(self._gallery.settings.collection)

    def _client(self, create=False):
        """The gallery's client, the side collection made (create) or known to exist; None when it
        does not exist and create is False."""
        client = self._gallery._client()
        settings = self._gallery.settings
        if not self._ready:
            if client.has_collection(self.collection, **deadline(settings)):
                client.load_collection(self.collection, **deadline(settings, slow=True))
            elif create:
                _create_side_collection(client, self.collection, settings)
            else:
                return None
            self._ready = True
        return client

    def put(self, kind, ids, blobs):
        kind = check_kind(kind)
        rows = [{"key": f"{kind}:{key}", "kind": kind, "item": key, "data": base64.b64encode(blob).decode(),
                 "vector": [0.0, 0.0]} for key, blob in check_blobs(ids, blobs)]
        if not rows:
            return
        with self._gallery._errors("side store put"):
            client = self._client(create=True)
            for start in range(0, len(rows), QUERY_CHUNK):
                client.upsert(self.collection, rows[start:start + QUERY_CHUNK], **deadline(self._gallery.settings))

    def get(self, kind, ids):
        kind, wanted = check_kind(kind), id_list(ids)
        found = {}
        with self._gallery._errors("side store get"):
            client = self._client()
            for start in range(0, len(wanted) if client else 0, QUERY_CHUNK):
                keys = [f"{kind}:{key}" for key in wanted[start:start + QUERY_CHUNK]]
                for row in self._query(client, f"key in {json.dumps(keys)}", ["item", "data"], len(keys)):
                    found[int(row["item"])] = base64.b64decode(row["data"])
        return [found.get(key) for key in wanted]

    def delete(self, ids, kinds=None):
        wanted = id_list(ids)
        if kinds is None:
            kind_filter = f'not (kind like "{ITEM_KINDS_EXCLUDE}%")'
        else:
            kind_filter = f"kind in {json.dumps([check_kind(kind) for kind in kinds])}"
        deleted = 0
        with self._gallery._errors("side store delete"):
            client = self._client()
            for start in range(0, len(wanted) if client else 0, QUERY_CHUNK):
                expression = f"item in {wanted[start:start + QUERY_CHUNK]} and {kind_filter}"
                keys = [row["key"] for row in self._query(client, expression, ["key"], 16384)]
                if keys:
                    client.delete(self.collection, ids=keys, **deadline(self._gallery.settings))
                    deleted += len(keys)
        return deleted

    def ids(self, kind, offset=0, limit=100):
        kind = check_kind(kind)
        with self._gallery._errors("side store list"):
            client = self._client()
            rows = self._query(client, f"kind == {json.dumps(kind)}", ["item"], limit, offset) if client else []
        return sorted(int(row["item"]) for row in rows)

    def count(self, kind):
        kind = check_kind(kind)
        with self._gallery._errors("side store count"):
            client = self._client()
            if client is None:
                return 0
            return int(self._query(client, f"kind == {json.dumps(kind)}", ["count(*)"], None)[0]["count(*)"])

    def usage(self):
        """{kind: {"count", "bytes"}} (bytes of the blobs, not of their base64)."""
        usage = {}
        with self._gallery._errors("side store usage"):
            client = self._client()
            if client is None:
                return usage
            iterator = client.query_iterator(self.collection, batch_size=1000, filter="",
                                             output_fields=["kind", "data"], consistency_level="Strong",
                                             **deadline(self._gallery.settings))
            try:
                while rows := iterator.next():
                    for row in rows:
                        entry = usage.setdefault(row["kind"], {"count": 0, "bytes": 0})
                        entry["count"] += 1
                        entry["bytes"] += len(row["data"]) * 3 // 4 - row["data"][-2:].count("=")
            finally:
                iterator.close()
        return dict(sorted(usage.items()))

    def drop(self):
        with self._gallery._errors("side store drop"):
            client = self._gallery._client()
            client.drop_collection(self.collection, **deadline(self._gallery.settings, slow=True))
        self._ready = False

    def close(self):
        """Nothing of its own to release: the gallery's client is closed with the gallery."""

    def _query(self, client, expression, fields, limit, offset=0):
        extra = {} if limit is None else {"limit": int(limit), "offset": int(offset)}
        return client.query(self.collection, filter=expression, output_fields=fields, consistency_level="Strong",
                            **extra, **deadline(self._gallery.settings))


def _create_side_collection(client, name, settings):
    pymilvus = import_pymilvus()
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", pymilvus.DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("kind", pymilvus.DataType.VARCHAR, max_length=32)
    schema.add_field("item", pymilvus.DataType.INT64)
    schema.add_field("data", pymilvus.DataType.VARCHAR, max_length=MAX_DATA_CHARS)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
    try:
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong",
                                 **deadline(settings, slow=True))
    except import_pymilvus().exceptions.MilvusException:
        if not client.has_collection(name, **deadline(settings)):  # else another server made it meanwhile
            raise
        client.load_collection(name, **deadline(settings, slow=True))
