"""The backend a gallery's settings name (`gallery.index_backend`), in one table, and the calls
that take those settings: open_gallery, create_gallery, gallery_exists.

    gallery = open_gallery(settings.gallery, expected_fingerprint=extractor.fingerprint)

Each backend also says how a new gallery is built out of sight and then put in place (`staged`),
and how processes starting at once take turns (`startup_lock`).
"""
import dataclasses
import fcntl
import logging
import os
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..errors import GalleryError
from .faiss_backend import create_faiss_gallery, holds_faiss_gallery, open_faiss_gallery
from .milvus_backend import create_milvus_gallery, holds_milvus_gallery, open_milvus_gallery

log = logging.getLogger("clas_system")


class FaissBackend:
    """A directory (settings.index_dir) on this machine."""

    @staticmethod
    def exists(settings):
        return holds_faiss_gallery(settings.index_dir)

    @staticmethod
    def open(settings, expected_fingerprint=None, read_only=False):
        return open_faiss_gallery(settings.index_dir, expected_fingerprint=expected_fingerprint, read_only=read_only)

    @staticmethod
    def create(settings, dim, fingerprint=None, directory=None):
        return create_faiss_gallery(directory or settings.index_dir, dim, method=settings.index_method,
                                    metric=settings.dist_type, fingerprint=fingerprint, nlist=settings.nlist,
                                    pq_size=settings.pq_size, nprobe=settings.nprobe)

    @classmethod
    @contextmanager
    def staged(cls, settings, dim, fingerprint):
        """A new gallery built in a sibling folder, renamed to index_dir when the block completes."""
        index_dir = Path(settings.index_dir)
        if index_dir.exists() and any(index_dir.iterdir()):
            raise GalleryError(f"{index_dir}: not empty, and holds no gallery; empty it or choose another index_dir")
        with staged_folder(index_dir) as staging:
            with cls.create(settings, dim, fingerprint, directory=staging) as gallery:
                yield gallery

    @staticmethod
    @contextmanager
    def startup_lock(settings):
        """One starting process at a time per index_dir: a lock file beside it."""
        index_dir = Path(settings.index_dir)
        try:
            index_dir.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(index_dir.with_name(f".{index_dir.name}.startup.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise GalleryError(f"cannot create the start-up lock beside {index_dir}: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class MilvusBackend:
    """A collection (settings.milvus.collection) on a Milvus server, shared by any number of servers."""

    @staticmethod
    def exists(settings):
        return holds_milvus_gallery(settings.milvus)

    @staticmethod
    def open(settings, expected_fingerprint=None, read_only=False):
        return open_milvus_gallery(settings.milvus, expected_fingerprint=expected_fingerprint)

    @staticmethod
    def create(settings, dim, fingerprint=None, collection=None):
        milvus = dataclasses.replace(settings.milvus, collection=collection or settings.milvus.collection)
        return create_milvus_gallery(milvus, dim, metric=settings.dist_type, fingerprint=fingerprint)

    @classmethod
    @contextmanager
    def staged(cls, settings, dim, fingerprint):
        """A new gallery built in a staging collection, renamed into place when the block completes;
        when another server built the collection first, its gallery stays and ours is dropped."""
        gallery = cls.create(settings, dim, fingerprint, collection=f"{settings.milvus.collection}__building_"
                                                                   f"{os.getpid()}")
        renamed = False
        try:
            yield gallery
            renamed = gallery.rename(settings.milvus.collection)
            if not renamed:
                log.warning("another process built %s first: opening its gallery", settings.milvus.collection)
        finally:
            if not renamed:
                gallery.drop()
            gallery.close()

    @staticmethod
    def startup_lock(settings):
        """None needed: a collection made meanwhile by another server is found and opened."""
        return nullcontext()


BACKENDS = {"faiss": FaissBackend, "milvus": MilvusBackend}


def backend_of(settings):
    return BACKENDS[settings.index_backend]


def gallery_exists(settings):
    """Whether the gallery the settings name exists (index_dir's files, or the Milvus collection)."""
    return backend_of(settings).exists(settings)


def open_gallery(settings, expected_fingerprint=None, read_only=False):
    """The gallery the settings name; with expected_fingerprint, refused unless made with those features."""
    return backend_of(settings).open(settings, expected_fingerprint, read_only)


def create_gallery(settings, dim, fingerprint=None):
    """A new, empty gallery where the settings say, shaped for `dim`-value vectors."""
    return backend_of(settings).create(settings, dim, fingerprint)


@contextmanager
def staged_folder(index_dir):
    """A sibling folder to write a new gallery in, renamed to index_dir (empty or absent) when
    the block completes and removed when it fails: a write cut short leaves no half-filled
    gallery that a later start would take for the real one."""
    index_dir = Path(index_dir)
    staging = index_dir.with_name(f".{index_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        if index_dir.exists():
            index_dir.rmdir()
        staging.rename(index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
