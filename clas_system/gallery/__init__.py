"""The recognition gallery: labelled feature vectors, searchable, durable, behind one interface.

Two backends answer the same calls (add, remove, search, stats, save, check_fingerprint, items,
close) with the same results (ids, Hit(id, label, doc, score) best first, higher is better):

  faiss   embedded: one directory of files, shared by every process on the machine
          (gunicorn workers, CLI tools) through an fsync'd write-ahead log and a file lock.
          create_gallery / open_gallery; see faiss_backend.
  milvus  a Milvus collection: Milvus Lite (one file or its standalone server) or a Milvus
          server/cluster, shared by any number of machines. create_milvus_gallery /
          open_milvus_gallery; see milvus_backend (needs `pip install '.[milvus]'`).

The rooms: config (settings, fingerprints), vectors (checking input, faiss indexes, scores),
items (ids/labels/docs), log (write-ahead log), snapshot, faiss_backend, milvus_backend,
gallery_list (PaddleClas's list file), migrate (one backend into another).
"""
from .config import METHODS, METRICS, GalleryConfig, gallery_config
from .errors import GalleryError, GalleryUnavailable
from .faiss_backend import Gallery, create_gallery, holds_faiss_gallery, open_gallery
from .gallery_list import read_gallery_list
from .items import Hit
from .log import WAL, encode_record
from .milvus_backend import MilvusGallery, MilvusSettings, create_milvus_gallery, open_milvus_gallery
from .migrate import migrate_gallery
from .snapshot import SNAPSHOT
from .vectors import ivf_training_size

__all__ = ["METHODS", "METRICS", "SNAPSHOT", "WAL", "Gallery", "GalleryConfig", "GalleryError", "GalleryUnavailable",
           "Hit", "MilvusGallery", "MilvusSettings", "create_gallery", "create_milvus_gallery", "encode_record",
           "gallery_config", "holds_faiss_gallery", "ivf_training_size", "migrate_gallery", "open_gallery",
           "open_milvus_gallery", "read_gallery_list"]
