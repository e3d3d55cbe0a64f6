"""The gallery index: every method and metric, durability (log replay, torn and corrupt records,
kill -9), fingerprints, and the gallery list format."""
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clas_system.gallery import (SNAPSHOT, WAL, GalleryError, create_faiss_gallery, encode_record,
                                 ivf_training_size, open_faiss_gallery, read_gallery_list)

REPO = Path(__file__).resolve().parents[1]
DIM = 32
# name -> (create_faiss_gallery arguments, how many items to add)
KINDS = {
    "Flat": (dict(method="Flat", metric="IP"), 200),
    "HNSW32": (dict(method="HNSW32", metric="IP"), 200),
    "HNSW32-L2": (dict(method="HNSW32", metric="L2"), 200),
    "IVF": (dict(method="IVF", metric="IP", nlist=4), 200),  # trains at 156 items
    "IVF-5-images": (dict(method="IVF", metric="L2", nlist=4), 5),  # never trains: exact search
    "hamming": (dict(method="Flat", metric="hamming"), 200),
    "hamming-HNSW32": (dict(method="HNSW32", metric="hamming"), 200),
    "hamming-IVF": (dict(method="IVF", metric="hamming", nlist=4), 200),
}


def unit_vectors(count, seed=0, dim=DIM):
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def labels_for(count, prefix="item"):
    return [f"{prefix} {i}" for i in range(count)]  # spaces in labels must survive


def filled(tmp_path, kind):
    args, count = KINDS[kind]
    gallery = create_faiss_gallery(tmp_path / "g", DIM, **args)
    vectors = unit_vectors(count)
    ids = gallery.add(vectors, labels_for(count), docs=[f"doc {i}" for i in range(count)])
    return gallery, vectors, ids


def hit_ids(results):
    return [[hit.id for hit in hits] for hits in results]


@pytest.mark.parametrize("kind", KINDS)
def test_add_search_remove(tmp_path, kind):
    gallery, vectors, ids = filled(tmp_path, kind)
    assert ids == list(range(len(vectors)))
    if kind == "IVF":
        assert len(vectors) >= ivf_training_size(4) and "IVF" in type(gallery._state.index).__name__
    results = gallery.search(vectors, k=3)
    assert [hits[0].label for hits in results] == labels_for(len(vectors))
    assert results[0][0].doc == "doc 0"
    assert all([h.score for h in hits] == sorted((h.score for h in hits), reverse=True) for hits in results)

    assert gallery.remove(ids=[0, 1, 10_000]) == 2
    assert gallery.remove(labels=["item 2", "no such label"]) == 1
    assert gallery.remove(ids=[0]) == 0
    removed = {0, 1, 2}
    for hits in gallery.search(vectors[:5], k=len(vectors)):
        assert not removed & {hit.id for hit in hits}
        assert len(hits) <= len(vectors) - 3
    assert gallery.search(vectors[3], k=1)[0][0].label == "item 3"
    stats = gallery.stats()
    assert stats["count"] == len(vectors) - 3 and "item 0" not in stats["labels"] and stats["labels"]["item 3"] == 1
    gallery.close()


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_reopen_give_identical_results(tmp_path, kind):
    gallery, vectors, _ = filled(tmp_path, kind)
    gallery.remove(ids=[3, 4])
    gallery.save()
    before = gallery.search(vectors, k=5)
    gallery.close()
    assert os.path.getsize(tmp_path / "g" / WAL) == 0
    with open_faiss_gallery(tmp_path / "g") as reopened:
        assert reopened.search(vectors, k=5) == before
        assert reopened.stats()["count"] == len(vectors) - 2


@pytest.mark.parametrize("kind", KINDS)
def test_log_replay_after_crash_without_save(tmp_path, kind):
    gallery, vectors, _ = filled(tmp_path, kind)
    gallery.remove(labels=["item 1"])
    gallery.close()  # writes nothing: the same files a crash would leave
    with open_faiss_gallery(tmp_path / "g") as reopened:
        assert reopened.stats()["count"] == len(vectors) - 1
        assert reopened.search(vectors[0], k=1)[0][0].label == "item 0"
        assert 1 not in {hit.id for hit in reopened.search(vectors[1], k=len(vectors))[0]}


def test_never_more_hits_than_live_items(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", DIM, method="HNSW32")
    gallery.add(unit_vectors(3), ["a", "b", "c"])
    assert [len(hits) for hits in gallery.search(unit_vectors(2, seed=1), k=10)] == [3, 3]
    gallery.remove(labels=["a", "b", "c"])
    assert gallery.search(unit_vectors(2, seed=1), k=10) == [[], []]


def test_hnsw_tombstones_are_skipped_and_rebuilt(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", DIM, method="HNSW32")
    vectors = unit_vectors(400)
    gallery.add(vectors, labels_for(400))
    gallery.remove(ids=list(range(0, 400, 5)))  # 20%: tombstones, still in the graph
    assert gallery._state.index.ntotal == 400
    for hits in gallery.search(vectors[:50], k=5):
        assert len(hits) == 5 and all(hit.id % 5 for hit in hits)
    gallery.save()
    gallery.close()
    gallery = open_faiss_gallery(tmp_path / "g")
    assert gallery.search(vectors[5], k=1)[0][0].label != "item 5"
    gallery.remove(ids=list(range(1, 400, 5)))  # 40%: the graph is rebuilt from live items
    assert gallery._state.index.ntotal == 240
    assert gallery.search(vectors[2], k=1)[0][0].label == "item 2"


def test_scores_are_higher_is_better_for_every_metric(tmp_path):
    vectors, query = unit_vectors(4), unit_vectors(1, seed=1)
    ip = create_faiss_gallery(tmp_path / "ip", DIM, method="Flat", metric="IP")
    ip.add(vectors, labels_for(4))
    assert np.allclose([h.score for h in ip.search(query, 4)[0]], np.sort(vectors @ query[0])[::-1], atol=1e-5)
    l2 = create_faiss_gallery(tmp_path / "l2", DIM, method="Flat", metric="L2")
    l2.add(vectors, labels_for(4))
    squared = ((vectors - query) ** 2).sum(axis=1)
    assert np.allclose([h.score for h in l2.search(query, 4)[0]], -np.sort(squared), atol=1e-5)
    bits = create_faiss_gallery(tmp_path / "bits", 16, method="Flat", metric="hamming")
    bits.add([[1] * 16, [1] * 8 + [0] * 8], ["all", "half"])
    assert [(h.label, h.score) for h in bits.search([[1] * 16], 2)[0]] == [("all", 1.0), ("half", 0.5)]


def test_ivf_pq_trains_at_its_threshold(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", 8, method="IVF", metric="L2", nlist=2, pq_size=4)
    count = ivf_training_size(2, pq_size=4)
    vectors = unit_vectors(count, dim=8)
    gallery.add(vectors[:10], labels_for(10))
    assert gallery.search(vectors[3], k=1)[0][0].label == "item 3"  # exact before training
    gallery.add(vectors[10:], labels_for(count)[10:])
    assert type(gallery._state.index).__name__ == "IndexIVFPQ"
    assert len(gallery.search(vectors[:2], k=5)[0]) == 5


# --- durability ---------------------------------------------------------------------------------


def small_gallery(tmp_path, adds=3):
    gallery = create_faiss_gallery(tmp_path / "g", DIM, method="Flat")
    for i in range(adds):
        gallery.add(unit_vectors(1, seed=i), [f"item {i}"])
    gallery.close()
    return tmp_path / "g"


@pytest.mark.parametrize("tail", ["half a record", "zeros"])
def test_torn_final_record_is_discarded(tmp_path, tail):
    directory = small_gallery(tmp_path)
    record = encode_record({"seq": 4, "op": "add", "ids": [3], "labels": ["torn"], "docs": [None]},
                           unit_vectors(1).tobytes())
    with open(directory / WAL, "ab") as f:
        f.write(record[:len(record) // 2] if tail == "half a record" else bytes(100))
    with open_faiss_gallery(directory) as gallery:
        assert gallery.stats()["labels"] == {"item 0": 1, "item 1": 1, "item 2": 1}
        gallery.add(unit_vectors(1, seed=9), ["after"])
    with open_faiss_gallery(directory) as gallery:
        assert gallery.stats()["count"] == 4 and "after" in gallery.stats()["labels"]


def test_corrupt_middle_record_refuses_to_open(tmp_path):
    directory = small_gallery(tmp_path)
    data = bytearray((directory / WAL).read_bytes())
    data[30] ^= 0xFF  # inside the first record's payload
    (directory / WAL).write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=f"{WAL}.*corrupt"):
        open_faiss_gallery(directory)


def test_corrupt_or_missing_files_refuse_to_open(tmp_path):
    directory = small_gallery(tmp_path)
    snapshot = (directory / SNAPSHOT).read_bytes()
    (directory / SNAPSHOT).write_bytes(snapshot[:len(snapshot) // 2])
    with pytest.raises(GalleryError, match=SNAPSHOT):
        open_faiss_gallery(directory)
    (directory / SNAPSHOT).write_bytes(snapshot)
    (directory / WAL).unlink()
    with pytest.raises(GalleryError, match=f"{WAL} is missing"):
        open_faiss_gallery(directory)
    (directory / SNAPSHOT).unlink()
    with pytest.raises(GalleryError, match="holds no gallery"):
        open_faiss_gallery(directory)


def test_crash_between_snapshot_and_log_reset_replays_nothing_twice(tmp_path):
    directory = small_gallery(tmp_path)
    old_log = (directory / WAL).read_bytes()
    with open_faiss_gallery(directory) as gallery:
        gallery.save()
    (directory / WAL).write_bytes(old_log)  # as if the crash came before the log was emptied
    with open_faiss_gallery(directory) as gallery:
        assert gallery.stats()["count"] == 3
        assert gallery.add(unit_vectors(1), ["next"]) == [3]


def test_kill_9_never_loses_an_acknowledged_add(tmp_path):
    directory = tmp_path / "g"
    create_faiss_gallery(directory, DIM, method="HNSW32").close()
    child = (
        "import sys, numpy as np\n"
        "from clas_system.gallery import open_faiss_gallery\n"
        "directory, seed, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "gallery = open_faiss_gallery(directory)\n"
        "rng = np.random.default_rng(int(seed))\n"
        "for i in range(10**6):\n"
        "    label = f'{seed}-{i}'\n"
        "    gallery.add(rng.standard_normal((1 + i % 3, dim)), [label] * (1 + i % 3))\n"
        "    print(label, flush=True)\n"
        "    if i % 10 == 9:\n"
        "        gallery.save()\n")
    rng = random.Random(0)
    acknowledged = set()
    for round_number in range(5):
        proc = subprocess.Popen([sys.executable, "-c", child, str(directory), str(round_number), str(DIM)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wanted = rng.randint(1, 40)
        while len(acknowledged) < wanted + 40 * round_number:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {proc.wait()} {proc.stderr.read()}")
            acknowledged.add(line.strip())
        time.sleep(rng.uniform(0, 0.02))  # kill at an arbitrary point, often mid-add or mid-save
        proc.send_signal(signal.SIGKILL)
        acknowledged.update(proc.stdout.read().split())  # printed before it died: acknowledged too
        assert proc.wait() == -signal.SIGKILL
        proc.stdout.close()
        proc.stderr.close()
        with open_faiss_gallery(directory) as gallery:
            missing = acknowledged - set(gallery.stats()["labels"])
        assert not missing, f"round {round_number}: acknowledged adds lost: {sorted(missing)}"


# --- fingerprints, locking, arguments -----------------------------------------------------------


def test_fingerprint_mismatch_names_the_differing_keys(tmp_path):
    built_with = {"model": "PPLCNetV2_base", "resize": 224, "mean": [0.485, 0.456, 0.406]}
    create_faiss_gallery(tmp_path / "g", DIM, fingerprint=built_with).close()
    with pytest.raises(GalleryError, match=r"differs in model \(gallery: 'PPLCNetV2_base', expected: 'other'\)"):
        open_faiss_gallery(tmp_path / "g", expected_fingerprint=dict(built_with, model="other"))
    with pytest.raises(GalleryError, match=r"crop \(gallery: missing"):
        open_faiss_gallery(tmp_path / "g", expected_fingerprint=dict(built_with, crop=224))
    with open_faiss_gallery(tmp_path / "g", expected_fingerprint=dict(built_with)) as gallery:
        assert gallery.stats()["fingerprint"] == built_with
    open_faiss_gallery(tmp_path / "g").close()  # no expectation: no check


def test_create_over_existing_gallery_needs_overwrite(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", DIM)
    gallery.add(unit_vectors(2), ["a", "b"])
    gallery.close()
    with pytest.raises(GalleryError, match="already holds a gallery.*overwrite=True"):
        create_faiss_gallery(tmp_path / "g", DIM)
    with create_faiss_gallery(tmp_path / "g", 16, method="Flat", overwrite=True) as gallery:
        assert gallery.stats()["count"] == 0 and gallery.stats()["dim"] == 16


def test_every_opener_sees_every_change_on_its_next_call(tmp_path):
    first = create_faiss_gallery(tmp_path / "g", DIM, method="HNSW32")
    second = open_faiss_gallery(tmp_path / "g")
    reader = open_faiss_gallery(tmp_path / "g", read_only=True)
    vectors = unit_vectors(6)
    assert first.add(vectors[:2], ["a", "b"]) == [0, 1]
    assert second.search(vectors[1], k=1)[0][0].label == "b"
    assert second.add(vectors[2], ["c"]) == [2]  # ids stay unique across openers
    assert first.remove(labels=["a"]) == 1
    assert second.stats()["labels"] == {"b": 1, "c": 1}
    second.save()  # compaction: a new log file, which the others notice and reload
    assert first.add(vectors[3], ["d"]) == [3]
    assert reader.stats()["labels"] == {"b": 1, "c": 1, "d": 1}
    assert [hits[0].label for hits in reader.search(vectors[1:4], k=1)] == ["b", "c", "d"]
    with pytest.raises(GalleryError, match="read_only"):
        reader.add(vectors[4], ["e"])
    for gallery in (first, second, reader):
        gallery.close()
    with pytest.raises(GalleryError, match="closed"):
        first.search(vectors[0])


def test_follower_skips_a_torn_record_until_the_next_writer_cuts_it(tmp_path):
    directory = small_gallery(tmp_path)
    with open_faiss_gallery(directory) as follower, open_faiss_gallery(directory) as writer:
        record = encode_record({"seq": 4, "op": "add", "ids": [3], "labels": ["torn"], "docs": [None]},
                               unit_vectors(1).tobytes())
        with open(directory / WAL, "ab") as f:  # as a writer killed mid-append leaves it
            f.write(record[:len(record) // 2])
        assert follower.stats()["count"] == 3
        assert writer.add(unit_vectors(1, seed=4), ["after"]) == [3]
        assert follower.stats()["labels"] == {"after": 1, "item 0": 1, "item 1": 1, "item 2": 1}


WRITER = (
    "import sys, numpy as np\n"
    "from clas_system.gallery import open_faiss_gallery\n"
    "directory, name, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
    "gallery = open_faiss_gallery(directory)\n"
    "rng = np.random.default_rng(len(name))\n"
    "for i in range(40):\n"
    "    gallery.add(rng.standard_normal((1, dim)), [f'{name}-{i}'])\n"
    "    if i % 3 == 2:\n"
    "        gallery.remove(labels=[f'{name}-{i - 1}'])\n"
    "    if i % 10 == 9:\n"
    "        gallery.save()\n")


def test_processes_writing_at_once_lose_nothing_and_agree(tmp_path):
    directory = tmp_path / "g"
    create_faiss_gallery(directory, DIM, method="IVF", nlist=2).close()  # trains at 78 items, mid-run
    watcher = open_faiss_gallery(directory, read_only=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(directory), name, str(DIM)], cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for name in ("left", "right-hand")]
    while any(writer.poll() is None for writer in writers):
        watcher.search(unit_vectors(2), k=3)  # following while they write, compact and train
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read()
        writer.stderr.close()
    expected = {f"{name}-{i}" for name in ("left", "right-hand") for i in range(40)
                if not (i % 3 == 1 and i < 39)}
    assert set(watcher.stats()["labels"]) == expected
    with open_faiss_gallery(directory) as reopened:
        assert reopened.stats() == watcher.stats()
        assert reopened.add(unit_vectors(1), ["last"]) == [80]  # 80 ids handed out, none twice
    watcher.close()


def _add_in_forked_child(gallery, vector):
    gallery.add(vector, ["from the child"])


def test_a_forked_child_shares_the_gallery(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", DIM, method="Flat")
    gallery.add(unit_vectors(1), ["from the parent"])
    child = multiprocessing.get_context("fork").Process(target=_add_in_forked_child,
                                                        args=(gallery, unit_vectors(1, seed=3)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert gallery.search(unit_vectors(1, seed=3), k=1)[0][0].label == "from the child"
    assert gallery.add(unit_vectors(1, seed=4), ["next"]) == [2]
    gallery.close()


@pytest.mark.parametrize("call, message", [
    (lambda g: g.add(unit_vectors(2, dim=8), ["a", "b"]), "dimension 8, the gallery expects 32"),
    (lambda g: g.add(unit_vectors(2), ["a"]), "2 vectors but 1 labels"),
    (lambda g: g.add(np.full((1, DIM), np.nan), ["a"]), "NaN"),
    (lambda g: g.add(unit_vectors(1), [7]), r"labels\[0\] must be a non-empty string"),
    (lambda g: g.add(unit_vectors(1), ["a"], docs=[1]), r"docs\[0\]"),
    (lambda g: g.search(unit_vectors(1), k=0), "k must be a positive integer"),
    (lambda g: g.remove(), "ids=... or labels=..."),
    (lambda g: g.remove(ids=["a"]), "ids must be integers"),
])
def test_bad_calls_say_what_is_wrong(tmp_path, call, message):
    with create_faiss_gallery(tmp_path / "g", DIM) as gallery:
        with pytest.raises(GalleryError, match=message):
            call(gallery)


@pytest.mark.parametrize("args, message", [
    (dict(method="HNSW"), "unknown index method 'HNSW'; allowed: Flat, HNSW32, IVF"),
    (dict(metric="cosine"), "unknown metric 'cosine'; allowed: IP, L2, hamming"),
    (dict(dim=0), "dim must be a positive integer"),
    (dict(dim=12, metric="hamming"), "multiple of 8"),
    (dict(method="Flat", pq_size=8), "pq_size applies only to method 'IVF'"),
    (dict(method="IVF", pq_size=5), "pq_size must divide dim"),
    (dict(fingerprint={"f": object()}), "fingerprint must be JSON-serialisable"),
])
def test_bad_settings_say_what_is_wrong(tmp_path, args, message):
    with pytest.raises(GalleryError, match=message):
        create_faiss_gallery(tmp_path / "g", **{"dim": DIM, **args})


def test_concurrent_searches_during_adds_and_removes(tmp_path):
    gallery = create_faiss_gallery(tmp_path / "g", DIM, method="HNSW32")
    gallery.add(unit_vectors(100), labels_for(100, "base"))
    removed_ids, errors, done = set(), [], threading.Event()

    def search():
        while not done.is_set():
            try:
                for hits in gallery.search(unit_vectors(4, seed=5), k=5):
                    assert len(hits) == 5
                    assert not {h.id for h in hits} & removed_ids
            except Exception as e:  # reported to the main thread
                errors.append(e)
                return

    threads = [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(30):
        [new_id] = gallery.add(unit_vectors(1, seed=100 + i), [f"new {i}"])
        if i % 2:
            gallery.remove(ids=[new_id])
            removed_ids.add(new_id)  # only after remove returned
    done.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert gallery.stats()["count"] == 115


# --- the gallery list file ----------------------------------------------------------------------


def gallery_files(tmp_path, lines):
    (tmp_path / "images" / "a").mkdir(parents=True)
    for name in ("a/1.jpg", "a/2.jpg"):
        (tmp_path / "images" / name).write_bytes(b"jpeg")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "list.txt", tmp_path / "images"


def test_gallery_list_gives_absolute_paths_and_labels(tmp_path):
    list_path, root = gallery_files(tmp_path, ["a/1.jpg\tred apple", "", "a/2.jpg\tpear"])
    assert read_gallery_list(list_path, root) == [(str(root / "a/1.jpg"), "red apple"), (str(root / "a/2.jpg"), "pear")]
    list_path.write_text("a/1.jpg,red apple\n")
    assert read_gallery_list(list_path, root, delimiter=",") == [(str(root / "a/1.jpg"), "red apple")]


def test_gallery_list_space_separated_line_names_its_number(tmp_path):
    list_path, root = gallery_files(tmp_path, ["a/1.jpg\tapple", "a/2.jpg pear"])
    with pytest.raises(GalleryError, match=r"list.txt, line 2: .*separated by a tab.*spaces but no tab"):
        read_gallery_list(list_path, root)


def test_gallery_list_missing_image_names_its_line(tmp_path):
    list_path, root = gallery_files(tmp_path, ["a/1.jpg\tapple", "", "a/3.jpg\tplum"])
    with pytest.raises(GalleryError, match=r"line 3: image .*a/3.jpg does not exist"):
        read_gallery_list(list_path, root)
