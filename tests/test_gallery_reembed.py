"""`clas-gallery reembed`: a gallery of the shared images, built with the default feature preset,
re-embedded for another preset from the regions it kept: same ids, labels and docs, each photo
recognised as itself by the new model, the old folder kept; kill -9 mid-way leaves the live
gallery as it was."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clas_system.gallery import GalleryError, open_faiss_gallery
from clas_system.gallery.reembed import previous_dir, staging_dir
from clas_system.gallery_cli import main as gallery_main
from clas_system.tasks.features import build_feature_extractor
from harness.payloads import SHARED_IMAGES
from params.recognition import load_recognition_settings

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("drink", "imagenet", "misc", "orientation", "product/gallery/anmuxi", "product/query")
ENTRIES = [(str(path.relative_to(SHARED_IMAGES)), f"{path.parent.name}/{path.stem}")
           for folder in FOLDERS for path in sorted((SHARED_IMAGES / folder).iterdir())]
NEW_PRESET = "dinov2_vits14"

pytestmark = pytest.mark.slow  # two feature models over the shared images


def build(tmp_path, *settings):
    data_file = tmp_path / "list.txt"
    data_file.write_text("".join(f"{path}\t{label}\n" for path, label in ENTRIES))
    index_dir = tmp_path / "gallery"
    assert gallery_main(["build", "--data-file", str(data_file), "--image-root", str(SHARED_IMAGES),
                         "--index-dir", str(index_dir), "--set", "index_method=Flat", *settings]) == 0
    return index_dir


def reembed_command(index_dir):
    return [sys.executable, "-m", "clas_system.gallery_cli", "reembed", "--index-dir", str(index_dir),
            "--to-preset", NEW_PRESET, "--set", "cpu_threads=1"]


def test_reembed_keeps_items_and_recognises_the_gallery_photos(tmp_path):
    index_dir = build(tmp_path)
    with open_faiss_gallery(index_dir) as gallery:
        gallery.relabel("drink/农夫山泉", labels=["drink/nongfu_spring"])
        gallery.remove(labels=["misc/wangzai"])
        before, _total = gallery.list_items(limit=100)
        fingerprint = gallery.config.fingerprint
    done = subprocess.run(reembed_command(index_dir), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["reembedded"] == len(before) and report["skipped_without_region"] == 0
    assert f"reembed: {len(before)} of about {len(before)} items" in done.stderr
    settings = load_recognition_settings({}, {"preset": NEW_PRESET, "cpu_threads": 1})
    extractor = build_feature_extractor(settings.feature)
    with open_faiss_gallery(index_dir, expected_fingerprint=extractor.fingerprint) as gallery:
        after, _total = gallery.list_items(limit=100)
        assert [(i.id, i.label, i.doc, i.added_at) for i in after] == [(i.id, i.label, i.doc, i.added_at)
                                                                       for i in before]
        photos = [(SHARED_IMAGES / path).read_bytes() for path, label in ENTRIES if label != "misc/wangzai"]
        hits = gallery.search(extractor.embed_images(photos), k=1)
        assert [h[0].label for h in hits] == [i.label for i in before]
        assert gallery.side.usage()["thumbnail"]["count"] == len(before)
        assert gallery.add(extractor.embed_images(photos[:1]), ["new"])[0] > max(i.id for i in before)
    with open_faiss_gallery(previous_dir(index_dir), expected_fingerprint=fingerprint) as old:
        assert old.count() == len(before)


def test_reembed_killed_mid_way_leaves_the_live_gallery(tmp_path):
    index_dir = build(tmp_path)
    with open_faiss_gallery(index_dir, read_only=True) as gallery:
        stats = gallery.stats()
    proc = subprocess.Popen(reembed_command(index_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:  # the first batch embedded: the new gallery is half built
        if line.startswith("reembed: "):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert staging_dir(index_dir).exists() and not previous_dir(index_dir).exists()
    with open_faiss_gallery(index_dir, expected_fingerprint=stats["fingerprint"]) as gallery:
        assert gallery.stats() == stats
        gallery.add(gallery.vectors([0])[0], ["added after the kill"])


def test_reembed_refuses_items_without_a_region(tmp_path):
    index_dir = build(tmp_path, "--set", 'curation={"keep_regions": false}')
    with pytest.raises(GalleryError, match=fr"{len(ENTRIES)} item\(s\) have no kept region to re-embed .* --skip-missing"):
        from clas_system.gallery.reembed import reembed_gallery
        settings = load_recognition_settings({}, {"preset": NEW_PRESET, "cpu_threads": 1})
        reembed_gallery(index_dir, build_feature_extractor(settings.feature))
    assert not staging_dir(index_dir).exists()
