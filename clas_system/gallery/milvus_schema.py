"""A Milvus gallery collection's schema and properties, and the filter expressions over its fields.

Fields: id (INT64, primary, assigned by Milvus), vector (FLOAT_VECTOR), label and doc (VARCHAR),
added_at (INT64 milliseconds since the epoch; collections made before it existed lack it). The
gallery's dim, metric and feature fingerprint are kept in the collection's META_PROPERTY.
"""
import json

from ..errors import GalleryError
from .config import gallery_config
from .milvus_calls import deadline, import_pymilvus

META_PROPERTY = "clas_gallery.meta"
FORMAT_VERSION = 1
MILVUS_METRICS = {"IP": "IP", "L2": "L2"}
MAX_TEXT_BYTES = 65535  # Milvus's VARCHAR limit


def collection_meta(dim, metric, fingerprint):
    return json.dumps({"format": FORMAT_VERSION, "dim": dim, "metric": metric, "fingerprint": fingerprint})


def create_collection(client, settings, config, overwrite, where):
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
    schema.add_field("added_at", pymilvus.DataType.INT64, nullable=True)  # milliseconds since the epoch
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=settings.index_type,
                    metric_type=MILVUS_METRICS[config.metric], params=dict(settings.index_params))
    client.create_collection(settings.collection, schema=schema, index_params=index,
                             consistency_level=settings.consistency_level,
                             properties={META_PROPERTY: collection_meta(config.dim, config.metric, config.fingerprint)},
                             **deadline(settings, slow=True))


def describe_collection(client, settings, where):
    if not client.has_collection(settings.collection, **deadline(settings)):
        raise GalleryError(f"{where} holds no gallery (no such collection); create one with create_milvus_gallery")
    return client.describe_collection(settings.collection, **deadline(settings))


def config_from_properties(properties, where):
    if META_PROPERTY not in properties:
        raise GalleryError(f"{where} was not made by this package (no {META_PROPERTY} property); refusing to use it")
    try:
        meta = json.loads(properties[META_PROPERTY])
        if meta.get("format") != FORMAT_VERSION:
            raise GalleryError(f"{where}: gallery format {meta.get('format')!r} is not the supported {FORMAT_VERSION}")
        return gallery_config(meta["dim"], "Flat", meta["metric"], meta["fingerprint"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise GalleryError(f"{where}: its {META_PROPERTY} property is unreadable ({e})") from None


def selection(ids, labels):
    """The expression picking items by id or label ("" when neither is given)."""
    clauses = []
    if len(ids):
        clauses.append(f"id in {ids.tolist()}")
    if labels:
        clauses.append(f"label in {string_list(labels)}")
    return " or ".join(clauses)


def like_escaped(text):
    """Text matched literally inside a Milvus like pattern (%, _ and \\ escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def string_list(values):
    """A Milvus expression list of string literals (JSON's quoting is Milvus's)."""
    return "[" + ", ".join(json.dumps(value, ensure_ascii=False) for value in values) + "]"
