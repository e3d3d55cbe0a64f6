"""kill -9 at random moments never loses an acknowledged gallery change (rec_system over HTTP).

Each round starts rec_system on the same gallery folder, adds (and sometimes removes) items
over HTTP while recording every acknowledged change, and SIGKILLs the server's process group
at a random moment after its first acknowledged add (the first add loads the feature model). At the end the gallery must hold exactly the acknowledged additions minus
the acknowledged removals; a change whose answer never arrived may or may not be there.
"""
import random
import signal
import threading
import time

import pytest
import requests
from conftest import launch, wait_ready

from harness.payloads import image_b64

pytestmark = pytest.mark.slow  # ten start-and-kill rounds

KILLS = 10


def change_until_killed(server, round_number, acked_adds, acked_removes, unanswered, rng):
    image = image_b64("textline/textline_orientation_test_0_0.png")
    url = f"{server.url}/predict/rec_system"
    pending_label = None
    n = 0
    while True:
        try:
            if acked_adds and rng.random() < 0.2:
                victim = rng.choice(sorted(acked_adds - acked_removes or acked_adds))
                pending_label = ("remove", victim)
                body = requests.post(url, json={"gallery": "remove", "labels": [victim]}, timeout=30).json()
                if body["status"] == "000":
                    acked_removes.add(victim)
            else:
                label = f"r{round_number}-{n}"
                pending_label = ("add", label)
                body = requests.post(url, json={"gallery": "add", "images": [image], "labels": [label]},
                                     timeout=30).json()
                if body["status"] == "000":
                    acked_adds.add(label)
                n += 1
            pending_label = None
        except (requests.RequestException, ValueError):  # the kill can cut an answer anywhere
            if pending_label is not None:
                unanswered.add(pending_label)
            return


def test_no_acknowledged_change_is_lost_across_kills(hub_home, tmp_path):
    rng = random.Random(20261124)
    modules = {"rec_system": {"index_dir": str(tmp_path / "gallery"), "index_method": "Flat", "cpu_threads": 1}}
    acked_adds, acked_removes, unanswered = set(), set(), set()
    for round_number in range(KILLS):
        server = wait_ready(launch(hub_home, tmp_path / "servers", modules))
        worker = threading.Thread(target=change_until_killed,
                                  args=(server, round_number, acked_adds, acked_removes, unanswered, rng))
        acked_before = len(acked_adds)
        worker.start()
        deadline = time.monotonic() + 60
        while len(acked_adds) == acked_before and time.monotonic() < deadline:
            time.sleep(0.05)  # the first add loads the feature model: kill only once the server changes things
        time.sleep(rng.uniform(0.0, 1.0))
        server.stop(signal.SIGKILL)
        worker.join(timeout=60)
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules))
    try:
        stats = requests.post(f"{server.url}/predict/rec_system", json={"gallery": "stats"}, timeout=60).json()
    finally:
        server.stop()
    assert stats["status"] == "000", stats
    present = set(stats["results"]["stats"]["labels"])
    assert len(acked_adds) >= KILLS  # the rounds really did change the gallery
    maybe_removed = {label for action, label in unanswered if action == "remove"}
    assert acked_adds - acked_removes - maybe_removed <= present, "acknowledged additions lost"
    assert not (acked_removes & present), "acknowledged removals came back"
