"""rec_system served on a Milvus server that dies or hangs: requests answer `unavailable` within
the deadline (gallery.milvus.timeout_s, default 5 s) instead of hanging, /ready says 503 while
/health stays 200, and the same server answers again, with every acknowledged change, once Milvus
is back. The Milvus Lite server here is this module's own, so it can be killed and stopped."""
import concurrent.futures
import os
import signal
import time
import uuid

import numpy as np
import pytest
import requests

from clas_system import Client
from clas_system.errors import GalleryUnavailable
from clas_system.gallery import MilvusSettings, create_milvus_gallery
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.payloads import image_b64, image_path
from harness.ports import free_port

pytestmark = [pytest.mark.milvus, pytest.mark.slow]  # a Milvus server killed, restarted and stopped

COCO = "misc/coco_000000570688.jpg"
DRINK = "drink/" + sorted(os.listdir(image_path("drink")))[0]
UNAVAILABLE_WITHIN_S = 15
RECOVERED_WITHIN_S = 60


class OwnMilvus:
    """A Milvus Lite server that can be killed and started again on the same port and data dir."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.proc, self.uri = None, None
        self.start()

    def start(self):
        self.proc, self.uri = start_milvus_server(self.folder / "data", self.port, self.folder / "server.log")

    def signal(self, sig):
        os.killpg(self.proc.pid, sig)

    def kill(self):
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.signal(signal.SIGCONT)
        stop_milvus_server(self.proc)


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    pytest.importorskip("pymilvus", reason="the milvus backend's extra is not installed: pip install '.[milvus]'")
    pytest.importorskip("milvus_lite", reason="the milvus backend's extra is not installed: pip install '.[milvus]'")
    server = OwnMilvus(tmp_path_factory.mktemp("own_milvus"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(server_factory, milvus):
    """A rec_system on `milvus` holding 街景 (COCO), its drink item added and removed again."""
    modules = {"rec_system": {"index_backend": "milvus", "cpu_threads": 1,
                              "milvus": {"uri": milvus.uri, "collection": f"faults_{uuid.uuid4().hex[:12]}"}}}
    server = server_factory(modules=modules)
    client = Client(server.url, retries=0)
    client.gallery("add", images=[image_path(COCO)], labels=["街景"])
    client.gallery("add", images=[image_path(DRINK)], labels=["drink"])
    assert client.gallery("remove", labels=["drink"])["removed"] == 1
    return server


def timed_answer(server, payload):
    """(HTTP status, JSON body, seconds) of one request."""
    started = time.monotonic()
    response = requests.post(server.predict_url("rec_system"), json=payload, timeout=120)
    return response.status_code, response.json(), time.monotonic() - started


def recognize_payload():
    return {"images": [image_b64(COCO)]}


def assert_unavailable(server, payload):
    status, body, seconds = timed_answer(server, payload)
    assert (status, body["error"]["code"]) == (503, "unavailable"), body
    assert seconds < UNAVAILABLE_WITHIN_S, f"unavailable after {seconds:.1f} s"
    assert requests.get(f"{server.url}/ready", timeout=30).status_code == 503
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    return seconds


def wait_recovered(server):
    """Seconds until a recognition answers again; it must still find 街景 and not the removed drink."""
    started = time.monotonic()
    while True:
        status, body, _seconds = timed_answer(server, recognize_payload())
        if status == 200:
            break
        assert body["error"]["code"] == "unavailable", body
        assert time.monotonic() - started < RECOVERED_WITHIN_S, f"still unavailable: {body['error']['message']}"
        time.sleep(0.5)
    assert body["results"]["prediction"][0][0]["rec_docs"] == "街景"
    stats = Client(server.url, retries=0).gallery("stats")["stats"]
    assert stats["labels"] == {"街景": 1}
    assert requests.get(f"{server.url}/ready", timeout=30).status_code == 200
    return time.monotonic() - started


def test_a_killed_milvus_answers_unavailable_and_its_restart_serves_again(served, milvus):
    milvus.kill()
    first = assert_unavailable(served, recognize_payload())
    add = assert_unavailable(served, {"gallery": "add", "images": [image_b64(DRINK)], "labels": ["lost"]})
    milvus.start()
    recovered = wait_recovered(served)
    print(f"killed: unavailable after {first:.1f} s (add {add:.1f} s); answering {recovered:.1f} s after restart")


def test_a_hung_milvus_answers_unavailable_within_the_deadline(served, milvus):
    milvus.signal(signal.SIGSTOP)
    try:
        first = assert_unavailable(served, recognize_payload())
        search = assert_unavailable(served, {"gallery": "search", "images": [image_b64(COCO)], "k": 1})
    finally:
        milvus.signal(signal.SIGCONT)
    recovered = wait_recovered(served)
    print(f"stopped: unavailable after {first:.1f} s (search {search:.1f} s); answering {recovered:.1f} s after "
          f"SIGCONT")


def seconds_to_fail(gallery, query):
    started = time.monotonic()
    with pytest.raises(GalleryUnavailable):
        gallery.search(query, k=1)
    return time.monotonic() - started


def test_request_threads_on_a_hung_milvus_each_fail_within_the_deadline(milvus):
    """Four threads at once, twice: on the client they share, then each connecting afresh; none
    waits for another's deadline."""
    settings = MilvusSettings(uri=milvus.uri, collection=f"threads_{uuid.uuid4().hex[:12]}")
    query = np.eye(8, dtype=np.float32)[:1]
    with create_milvus_gallery(settings, 8) as gallery:
        gallery.add(query, ["one"])
        milvus.signal(signal.SIGSTOP)
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for _round in range(2):
                    seconds = list(pool.map(seconds_to_fail, [gallery] * 4, [query] * 4))
                    assert max(seconds) < settings.timeout_s + 3, seconds
        finally:
            milvus.signal(signal.SIGCONT)
        assert gallery.search(query, k=1)[0][0].label == "one"
