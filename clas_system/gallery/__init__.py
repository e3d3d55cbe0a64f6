"""The recognition gallery: labelled feature vectors, searchable, durable, behind one interface.

    gallery = open_gallery(settings.gallery, expected_fingerprint=extractor.fingerprint)
    gallery.add(vectors, labels, docs)       # ids
    gallery.search(queries, k=5)             # [[Hit(id, label, doc, score), ...] per query]
    gallery.list_items(offset, limit, label=None, text=None)   # ([Item(id, label, doc, added_at)], total)
    gallery.relabel("new label", ids=[...])  # durable like add
    gallery.side.put("thumbnail", ids, blobs) / .get(kind, ids)   # named blobs per item (side_store)

Two backends answer the same calls (interface.Gallery) with the same results, their arguments
checked once in the shared layer (interface.CheckedCalls); the settings' index_backend names
one (backends):

  faiss   embedded: one directory of files, shared by every process on the machine
          (gunicorn workers, CLI tools) through an fsync'd write-ahead log and a file lock;
          its side store is side.sqlite in the same directory.
          faiss_backend (files, locks, following other processes), faiss_state (items and
          index in memory), items, vectors, log (write-ahead log), snapshot.
  milvus  a Milvus collection: Milvus Lite (one file or its standalone server) or a Milvus
          server/cluster, shared by any number of machines. milvus_backend (needs
          `pip install '.[milvus]'`).

Around them: config (a gallery's settings and fingerprint), startup (open or build at start),
migrate (one backend into another), paddleclas_index (PaddleClas's vector.index + id_map.pkl).
"""
from params.gallery import MilvusSettings

from ..errors import GalleryError, GalleryInputError, GalleryUnavailable
from ..gallery_list import read_gallery_list
from .backends import create_gallery, gallery_exists, open_gallery, staged_folder
from .config import GalleryConfig, gallery_config
from .faiss_backend import FaissGallery, create_faiss_gallery, holds_faiss_gallery, open_faiss_gallery
from .interface import Gallery, Hit, Item
from .log import WAL, encode_record
from .milvus_backend import MilvusGallery, create_milvus_gallery, holds_milvus_gallery, open_milvus_gallery
from .migrate import migrate_gallery
from .side_store import MAX_BLOB_BYTES, SideStore
from .snapshot import SNAPSHOT
from .vectors import ivf_training_size

__all__ = ["SNAPSHOT", "WAL", "FaissGallery", "Gallery", "GalleryConfig", "GalleryError", "GalleryInputError",
           "GalleryUnavailable", "Hit", "Item", "MAX_BLOB_BYTES", "MilvusGallery", "MilvusSettings", "create_faiss_gallery", "create_gallery",
           "create_milvus_gallery", "encode_record", "gallery_config", "gallery_exists", "holds_faiss_gallery",
           "holds_milvus_gallery", "ivf_training_size", "migrate_gallery", "open_faiss_gallery", "open_gallery",
           "open_milvus_gallery", "read_gallery_list", "SideStore", "staged_folder"]
