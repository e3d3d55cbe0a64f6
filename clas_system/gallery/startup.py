"""The gallery at start-up: open the one the settings name, build it from a PaddleClas gallery
list, or create it empty, shaped and fingerprinted for the feature extractor.

    gallery = open_or_build_gallery(settings.gallery, extractor)   # faiss or milvus, per index_backend
    open_or_build_gallery(settings.gallery, extractor, keep=keep)  # keep(gallery, ids, RGB arrays) after each add

Safe when several processes start at once (gunicorn workers, several servers on one Milvus):
on one machine a lock file beside index_dir lets one process build while the others wait and
then open its result; on Milvus a build goes to a staging collection that is renamed into place,
and a process that finds the collection already made opens it instead.
"""
import logging

from ..errors import GalleryError
from ..gallery_list import read_gallery_list
from ..runtime.forked import run_in_child
from .backends import backend_of, create_gallery, gallery_exists, open_gallery
from .kept_images import keep_images

log = logging.getLogger("clas_system")


def fill_from_list(gallery, entries, extractor, curation=None, keep=None):
    """Embed (image path, label) entries in batches and add them to the gallery, keeping their
    thumbnails and regions as `curation` (gallery settings) says; keep(gallery, ids, RGB arrays)
    after each batch (a recognizer's own per-item extras: keypoints)."""
    size = extractor.settings.serving.batch_size
    for start in range(0, len(entries), size):
        chunk = entries[start:start + size]
        images = []
        for path, _label in chunk:
            with open(path, "rb") as f:
                images.append(f.read())
        paths = [path for path, _label in chunk]
        ids = gallery.add(extractor.embed_images(images, paths), [label for _path, label in chunk])
        keeps_images = curation is not None and (curation.keep_thumbnails or curation.keep_regions)
        if keeps_images or keep is not None:
            arrays = [extractor.decode(data, path) for data, path in zip(images, paths)]
            if keeps_images:
                keep_images(gallery, ids, arrays, curation)
            if keep is not None:
                keep(gallery, ids, arrays)


def build_gallery(settings, extractor, keep=None):
    """The PaddleClas gallery list settings.data_file, embedded into a new gallery.

    Built out of sight (a staging folder or collection) and put in place when complete, so a
    build cut short leaves no half-filled gallery that a later start would take for the real one."""
    entries = read_gallery_list(settings.data_file, settings.image_root, settings.delimiter)
    with backend_of(settings).staged(settings, extractor.dim, extractor.fingerprint) as gallery:
        fill_from_list(gallery, entries, extractor, settings.curation, keep)
        gallery.save()
    return open_gallery(settings, expected_fingerprint=extractor.fingerprint)


def build_and_close(settings, extractor, keep=None):
    build_gallery(settings, extractor, keep).close()


def open_or_build_gallery(settings, extractor, keep=None):
    """Open the gallery (refusing a corrupt one or one made with other features); else build it
    from data_file; else create it empty. Logs what it opened."""
    with backend_of(settings).startup_lock(settings):
        if gallery_exists(settings):
            if settings.data_file is not None:
                log.warning("the gallery exists: opening it as it is (data_file %s is only read to build a new one)",
                            settings.data_file)
            gallery = open_gallery(settings, expected_fingerprint=extractor.fingerprint)
        elif settings.data_file is not None:
            run_in_child(build_and_close, settings, extractor, keep)  # embedding runs the model: not here
            gallery = open_gallery(settings, expected_fingerprint=extractor.fingerprint)
        else:
            gallery = _create_or_open(settings, extractor)
    log.info("gallery: %s, %d items", gallery.describe(), gallery.count())
    return gallery


def _create_or_open(settings, extractor):
    """Create the empty gallery; one another server made meanwhile (on Milvus) is opened instead."""
    try:
        return create_gallery(settings, extractor.dim, extractor.fingerprint)
    except GalleryError:
        if gallery_exists(settings):
            return open_gallery(settings, expected_fingerprint=extractor.fingerprint)
        raise
