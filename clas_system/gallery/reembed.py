"""Re-embedding a faiss gallery for another feature model, from the regions it kept (kept_images):

    clas-gallery reembed --index-dir /srv/gallery --to-preset dinov2_vits14

builds a new gallery beside the live one (`.<name>.reembed`, next to index_dir) while the live one
keeps serving: each item's kept region is embedded with the new model and added under the same
id, label, doc and added_at, and every side-store blob (thumbnails, regions, keypoints, the review
queue) is copied. Then, holding the live gallery's lock so no change slips between, the items
added, removed or relabelled meanwhile are brought over, and the folders are switched by two
renames: index_dir becomes `.<name>.before-reembed` (kept, the way back) and the new folder
becomes index_dir. A failure or a kill before the switch leaves the live gallery as it was (the
half-built folder is removed by the next reembed). A server still running the old model refuses
the switched gallery on its next request (its settings changed): restart it with the new preset.

An item with no kept region (added with curation.keep_regions off, or before regions were kept)
cannot be re-embedded: reembed refuses, naming how many, unless skip_missing drops them.
"""
import fcntl
import os
import shutil
from pathlib import Path

from ..errors import GalleryError
from .faiss_backend import create_faiss_gallery, open_faiss_gallery
from .kept_images import REGION

BATCH = 64
SIDE_BATCH = 500


def staging_dir(index_dir):
    return index_dir.with_name(f".{index_dir.name}.reembed")


def previous_dir(index_dir):
    return index_dir.with_name(f".{index_dir.name}.before-reembed")


def reembed_gallery(index_dir, extractor, skip_missing=False, progress=print):
    """Rebuild the faiss gallery in index_dir with `extractor` (a tasks.features.FeatureExtractor:
    embed_images, dim, fingerprint) and switch to it; returns a report dict."""
    index_dir = Path(index_dir)
    with _reembed_lock(index_dir), open_faiss_gallery(index_dir) as live:
        missing = _without_region(live)
        if missing and not skip_missing:
            raise GalleryError(f"{len(missing)} item(s) have no kept region to re-embed (e.g. ids {missing[:5]}): "
                               f"they were added with curation.keep_regions off or before regions were kept; add "
                               f"their images again, or pass --skip-missing to leave them out of the new gallery")
        staging = staging_dir(index_dir)
        shutil.rmtree(staging, ignore_errors=True)  # a reembed that was cut short
        config = live.config
        with create_faiss_gallery(staging, extractor.dim, method=config.method, metric=config.metric,
                                  fingerprint=extractor.fingerprint, nlist=config.nlist, pq_size=config.pq_size,
                                  nprobe=config.nprobe) as target:
            try:
                copied, skipped = _copy_items(live, target, extractor, skip_missing, progress)
                with live.held() as (items, next_id):  # writers wait: nothing changes until the switch
                    changed = _catch_up(live, target, extractor, items, next_id, skip_missing)
                    _copy_side(live, target)
                    target.save()
                    _switch(index_dir, staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return {"reembedded": copied + changed["added"], "skipped_without_region": skipped + changed["skipped"],
            "changed_meanwhile": changed, "index_dir": str(index_dir), "previous": str(previous_dir(index_dir)),
            "fingerprint": extractor.fingerprint}


def _copy_items(live, target, extractor, skip_missing, progress):
    """Every live item embedded from its kept region into target, same ids; (copied, skipped)."""
    total = live.count()
    copied = skipped = seen = 0
    after = None
    while True:
        items, _total = live.list_items(limit=BATCH, after=after)
        if not items:
            return copied, skipped
        added, missing = _embed_into(live, target, extractor, items, 0, skip_missing)
        copied, skipped, seen, after = copied + added, skipped + missing, seen + len(items), items[-1].id
        progress(f"reembed: {seen} of about {total} items")


def _embed_into(live, target, extractor, items, next_id, skip_missing):
    """Embed these items' kept regions and add them to target under their ids; (added, skipped)."""
    regions = live.side.get(REGION, [item.id for item in items])
    missing = [item.id for item, region in zip(items, regions) if region is None]
    if missing and not skip_missing:  # added meanwhile without a region
        raise GalleryError(f"{len(missing)} item(s) added during the reembed have no kept region (e.g. ids "
                           f"{missing[:5]}); pass --skip-missing to leave them out of the new gallery")
    kept = [(item, region) for item, region in zip(items, regions) if region is not None]
    if not kept and not next_id:
        return 0, len(missing)
    vectors = (extractor.embed_images([region for _item, region in kept], [f"item {item.id}" for item, _r in kept])
               if kept else [])
    target.copy_items([item.id for item, _r in kept], vectors, [item.label for item, _r in kept],
                      [item.doc for item, _r in kept], [item.added_at for item, _r in kept], next_id)
    return len(kept), len(missing)


def _catch_up(live, target, extractor, items, next_id, skip_missing):
    """Bring over what changed in the live gallery (its `items` now) since the copy; the caller
    holds the live gallery still."""
    now = {item.id: item for item in items}
    copied = {item.id: item for item in _every_item(target)}
    gone = sorted(set(copied) - set(now))
    if gone:
        target.remove(ids=gone)
    new = [now[i] for i in sorted(set(now) - set(copied))]
    added = skipped = 0
    for start in range(0, max(len(new), 1), BATCH):  # at least once: reserves the ids below next_id
        done, missing = _embed_into(live, target, extractor, new[start:start + BATCH], next_id, skip_missing)
        added, skipped = added + done, skipped + missing
    relabelled = 0
    for item_id, item in copied.items():
        if item_id in now and now[item_id].label != item.label:
            relabelled += target.relabel(now[item_id].label, ids=[item_id])
    return {"added": added, "removed": len(gone), "relabelled": relabelled, "skipped": skipped}


def _without_region(gallery):
    """Ids of the live items that kept no region."""
    missing = []
    for ids, _vectors, _labels, _docs in gallery.items(SIDE_BATCH):
        missing.extend(i for i, region in zip(ids.tolist(), gallery.side.get(REGION, ids)) if region is None)
    return missing


def _every_item(gallery):
    after, items = None, []
    while page := gallery.list_items(limit=1000, after=after)[0]:
        items.extend(page)
        after = page[-1].id
    return items


def _copy_side(live, target):
    """Every side-store blob of every kind, by id (item ids are the same in both galleries)."""
    for kind in live.side.usage():
        offset = 0
        while ids := live.side.ids(kind, offset, SIDE_BATCH):
            target.side.put(kind, ids, live.side.get(kind, ids))
            offset += len(ids)


def _switch(index_dir, staging):
    previous = previous_dir(index_dir)
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(index_dir, previous)
    os.rename(staging, index_dir)


class _reembed_lock:
    """One reembed at a time per gallery: a lock file beside index_dir."""

    def __init__(self, index_dir):
        self.path = index_dir.with_name(f".{index_dir.name}.reembed.lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise GalleryError(f"another reembed of {self.path.parent} is running (it holds {self.path})") from None

    def __exit__(self, *exc):
        os.close(self.fd)
