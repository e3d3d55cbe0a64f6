"""The gallery at start-up: open the one the settings name, build it from a PaddleClas gallery
list, or create it empty, shaped and fingerprinted for the feature extractor.

    gallery = open_or_build_gallery(settings.gallery, extractor)   # faiss or milvus, per index_backend

Safe when several processes start at once (gunicorn workers, several servers on one Milvus):
on one machine a lock file beside index_dir lets one process build while the others wait and
then open its result; on Milvus a build goes to a staging collection that is renamed into place,
and a process that finds the collection already made opens it instead.
"""
import dataclasses
import fcntl
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .forked import run_in_child
from .gallery import (GalleryError, create_gallery, create_milvus_gallery, holds_faiss_gallery, open_gallery,
                      open_milvus_gallery, read_gallery_list)
from .gallery.milvus_backend import holds_milvus_gallery

log = logging.getLogger("clas_system")


def holds_gallery(index_dir):
    """Whether index_dir has a faiss gallery's files (then it is opened, never silently rebuilt)."""
    return holds_faiss_gallery(index_dir)


def gallery_exists(settings):
    """Whether the gallery the settings name exists (index_dir's files, or the Milvus collection)."""
    if settings.index_backend == "milvus":
        return holds_milvus_gallery(settings.milvus)
    return holds_faiss_gallery(settings.index_dir)


def new_gallery(settings, extractor, directory=None, collection=None):
    """An empty gallery shaped for this feature extractor, fingerprint recorded (faiss: in
    `directory`, default index_dir; milvus: in `collection`, default milvus.collection)."""
    if settings.index_backend == "milvus":
        milvus = dataclasses.replace(settings.milvus, collection=collection or settings.milvus.collection)
        return create_milvus_gallery(milvus, extractor.dim, metric=settings.dist_type,
                                     fingerprint=extractor.fingerprint)
    return create_gallery(directory or settings.index_dir, extractor.dim, method=settings.index_method,
                          metric=settings.dist_type, fingerprint=extractor.fingerprint, nlist=settings.nlist,
                          pq_size=settings.pq_size, nprobe=settings.nprobe)


def open_existing_gallery(settings, extractor=None):
    """The gallery the settings name; with an extractor, refused unless made with its features."""
    fingerprint = extractor.fingerprint if extractor is not None else None
    if settings.index_backend == "milvus":
        return open_milvus_gallery(settings.milvus, expected_fingerprint=fingerprint)
    return open_gallery(settings.index_dir, expected_fingerprint=fingerprint)


def fill_from_list(gallery, entries, extractor):
    """Embed (image path, label) entries in batches and add them to the gallery."""
    size = extractor.settings.serving.batch_size
    for start in range(0, len(entries), size):
        chunk = entries[start:start + size]
        images = []
        for path, _label in chunk:
            with open(path, "rb") as f:
                images.append(f.read())
        gallery.add(extractor.embed_images(images, [path for path, _label in chunk]),
                    [label for _path, label in chunk])


def build_gallery(settings, extractor):
    """The PaddleClas gallery list settings.data_file, embedded into a new gallery.

    Built in a staging folder (or collection) renamed into place when complete, so a build cut
    short leaves no half-filled gallery that a later start would take for the real one."""
    entries = read_gallery_list(settings.data_file, settings.image_root, settings.delimiter)
    if settings.index_backend == "milvus":
        return _build_milvus_gallery(settings, extractor, entries)
    index_dir = Path(settings.index_dir)
    if index_dir.exists() and any(index_dir.iterdir()):
        raise GalleryError(f"{index_dir}: not empty, and holds no gallery; empty it or choose another index_dir")
    with staged_folder(index_dir) as staging:
        with new_gallery(settings, extractor, directory=staging) as gallery:
            fill_from_list(gallery, entries, extractor)
            gallery.save()
    return open_gallery(index_dir, expected_fingerprint=extractor.fingerprint)


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


def _build_milvus_gallery(settings, extractor, entries):
    staging = f"{settings.milvus.collection}__building_{os.getpid()}"
    gallery = new_gallery(settings, extractor, collection=staging)
    renamed = False
    try:
        fill_from_list(gallery, entries, extractor)
        gallery.save()
        renamed = gallery.rename(settings.milvus.collection)
        if not renamed:
            log.warning("another process built %s first: opening its gallery", settings.milvus.collection)
    finally:
        if not renamed:
            gallery.drop()
        gallery.close()
    return open_milvus_gallery(settings.milvus, expected_fingerprint=extractor.fingerprint)


@contextmanager
def startup_lock(settings):
    """One starting process at a time per faiss index_dir (a lock file beside it); none for milvus."""
    if settings.index_backend == "milvus":
        yield
        return
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


def build_and_close(settings, extractor):
    build_gallery(settings, extractor).close()


def open_or_build_gallery(settings, extractor):
    """Open the gallery (refusing a corrupt one or one made with other features); else build it
    from data_file; else create it empty. Logs what it opened."""
    with startup_lock(settings):
        if gallery_exists(settings):
            if settings.data_file is not None:
                log.warning("the gallery exists: opening it as it is (data_file %s is only read to build a new one)",
                            settings.data_file)
            gallery = open_existing_gallery(settings, extractor)
        elif settings.data_file is not None:
            run_in_child(build_and_close, settings, extractor)  # embedding runs the model: not here
            gallery = open_existing_gallery(settings, extractor)
        else:
            gallery = _create_or_open(settings, extractor)
    log.info("gallery: %s, %d items", gallery.describe(), gallery.count())
    return gallery


def _create_or_open(settings, extractor):
    """Create the empty gallery; a Milvus collection another server made meanwhile is opened instead."""
    try:
        return new_gallery(settings, extractor)
    except GalleryError:
        if settings.index_backend == "milvus" and gallery_exists(settings):
            return open_existing_gallery(settings, extractor)
        raise
