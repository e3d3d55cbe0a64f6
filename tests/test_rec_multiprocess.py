"""rec_system under `hub serving start -c` with use_multiprocess and 2 workers on one faiss
gallery: every acknowledged change is seen by the next requests whichever worker answers, and
kill -9 of the whole server loses none."""
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import launch, wait_ready

from clas_system import Client
from clas_system.tasks import recognition
from harness.payloads import image_b64, image_path

pytestmark = pytest.mark.skipif(
    hasattr(recognition, "check_process"),
    reason="clas_system.tasks.recognition still refuses requests in forked workers (check_process)")

COCO = "misc/coco_000000570688.jpg"
REQUESTS = 20
KILLS = 3


def rec_modules(index_dir):
    # the default backend (OpenVINO): start-up runs no model in the master, so the workers' own work
    return {"rec_system": {"index_dir": str(index_dir), "index_method": "Flat", "cpu_threads": 1}}


def seen_by_next_requests(client, label, count=REQUESTS):
    """Whether `label` is in the gallery for each of `count` requests sent 4 at a time (so both
    workers answer): mostly stats (cheap), every 5th a search for the COCO image's best hit."""
    def one(i):
        if i % 5:
            return label in client.gallery("stats")["stats"]["labels"]
        hits = client.gallery("search", images=[image_path(COCO)], k=1)["hits"][0]
        return bool(hits) and hits[0]["label"] == label
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def test_each_worker_sees_each_change_on_the_next_request(server_factory, tmp_path):
    server = server_factory(modules=rec_modules(tmp_path / "gallery"), use_multiprocess=True, workers=2)
    client = Client(server.url)
    [new_id] = client.gallery("add", images=[image_path(COCO)], labels=["coco"])["ids"]
    assert seen_by_next_requests(client, "coco") == [True] * REQUESTS
    assert client.gallery("remove", ids=[new_id])["removed"] == 1
    assert seen_by_next_requests(client, "coco") == [False] * REQUESTS
    assert client.gallery("save")["stats"]["count"] == 0  # compaction by one worker, followed by the other
    assert client.gallery("add", images=[image_path(COCO)], labels=["again"])["ids"] == [new_id + 1]
    assert seen_by_next_requests(client, "again", 8) == [True] * 8
    assert client.recognize(image_path(COCO))[0][0]["rec_docs"] == "again"
    server.stop()


def change_until_killed(url, round_number, acked_adds, acked_removes, unanswered, rng):
    image = image_b64(COCO)
    n = 0
    while True:
        if acked_adds - acked_removes and rng.random() < 0.2:
            pending = ("remove", rng.choice(sorted(acked_adds - acked_removes)))
            payload = {"gallery": "remove", "labels": [pending[1]]}
        else:
            pending = ("add", f"r{round_number}-{n}-{threading.get_ident() % 1000}")
            payload = {"gallery": "add", "images": [image], "labels": [pending[1]]}
            n += 1
        try:
            body = requests.post(url, json=payload, timeout=30).json()
        except (requests.RequestException, ValueError):  # the kill can cut an answer anywhere
            unanswered.add(pending)
            return
        if body["status"] == "000":
            (acked_adds if pending[0] == "add" else acked_removes).add(pending[1])


def test_kill_9_of_a_two_worker_server_loses_no_acknowledged_change(hub_home, tmp_path):
    rng = random.Random(20261130)
    modules = rec_modules(tmp_path / "gallery")
    acked_adds, acked_removes, unanswered = set(), set(), set()
    for round_number in range(KILLS):
        server = wait_ready(launch(hub_home, tmp_path / "servers", modules, use_multiprocess=True, workers=2))
        url = f"{server.url}/predict/rec_system"
        clients = [threading.Thread(target=change_until_killed,
                                    args=(url, round_number, acked_adds, acked_removes, unanswered, rng))
                   for _ in range(2)]  # two at once, so both workers write
        acked_before = len(acked_adds)
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while len(acked_adds) < acked_before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # each worker loads the feature model on its first request
        time.sleep(rng.uniform(0.2, 1.5))
        server.stop(signal.SIGKILL)
        for client in clients:
            client.join(timeout=60)
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules))
    try:
        stats = Client(server.url).gallery("stats")["stats"]
    finally:
        server.stop()
    present = set(stats["labels"])
    assert len(acked_adds) >= 2 * KILLS  # the rounds really did change the gallery
    maybe_removed = {label for action, label in unanswered if action == "remove"}
    assert acked_adds - acked_removes - maybe_removed <= present, "acknowledged additions lost"
    assert not (acked_removes & present), "acknowledged removals came back"
