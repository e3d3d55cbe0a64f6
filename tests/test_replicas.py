"""The replica drill of docs/replicas.md: two rec_system replicas on one Milvus behind nginx running
docs/replicas/nginx-rec_system.conf as shipped, 8 clients of recognitions and gallery adds, one
replica SIGKILLed mid-run and restarted on its port. No recognition fails (nginx retries them
on the other replica; the clients themselves never retry), every acknowledged add is in the
gallery exactly once (adds carry a request_id, so nginx may retry them too), the restarted
replica takes traffic again, and an add sent to both replicas with one request_id makes one
item. The figures are printed (pytest -s)."""
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import needs_system_package, wait_ready

from clas_system import Client, ClientError
from harness.hub_server import launch_hub_server
from harness.nginx import access_log_lines, nginx_installed, start_nginx, stop_nginx
from harness.payloads import image_path
from harness.ports import free_port

pytestmark = pytest.mark.slow

SITE_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "replicas" / "nginx-rec_system.conf"
QUERIES = ["drink/youjia.jpeg", "drink/nongfu_spring.jpeg", "misc/wangzai.jpg", "misc/coco_000000570688.jpg"]
RECOGNIZERS, ADDERS = 6, 2
BEFORE_KILL_S, AFTER_BACK_S = 6.0, 4.0


def replica_modules(milvus_uri, collection):
    return {"rec_system": {"index_backend": "milvus", "milvus": {"uri": milvus_uri, "collection": collection},
                           "cpu_threads": 1, "feature": {"preset": "pplcnet_pulc_1280"}, "detector": None}}


class Drill:
    """Client threads until stop(): recognitions (no client retries) and adds (the client's own
    request_id and retries), each add a new crop under a new label."""

    def __init__(self, url):
        self.url = url
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.counts = Counter()
        self.failures = []
        self.acknowledged = {}  # label -> ids
        self.threads = [threading.Thread(target=self.recognize, daemon=True) for _ in range(RECOGNIZERS)]
        self.threads += [threading.Thread(target=self.add, args=(seed,), daemon=True) for seed in range(ADDERS)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def outcome(self, kind, error=None):
        with self.lock:
            self.counts[f"{kind} sent"] += 1
            if error is not None:
                self.counts[f"{kind} failed"] += 1
                self.failures.append(f"{kind}: {error}")

    def recognize(self):
        client = Client(self.url, retries=0, timeout=120)
        n = 0
        while not self.stopping.is_set():
            try:
                client.recognize(image_path(QUERIES[n % len(QUERIES)]))
                self.outcome("recognition")
            except ClientError as err:
                self.outcome("recognition", err)
            n += 1

    def add(self, seed):
        client, rng = Client(self.url, timeout=120), np.random.default_rng(seed)
        photos = [cv2.cvtColor(cv2.imread(image_path(q)), cv2.COLOR_BGR2RGB) for q in QUERIES]
        while not self.stopping.is_set():
            photo = photos[rng.integers(len(photos))]
            height, width = photo.shape[:2]
            h, w = int(height * rng.uniform(0.6, 0.9)), int(width * rng.uniform(0.6, 0.9))
            y, x = rng.integers(height - h + 1), rng.integers(width - w + 1)
            label = f"drill-{uuid.uuid4().hex[:10]}"
            try:
                crop = np.ascontiguousarray(photo[y:y + h, x:x + w])
                ids = client.gallery("add", images=[crop], labels=[label])["ids"]
                with self.lock:
                    self.acknowledged[label] = ids
                self.outcome("add")
            except ClientError as err:
                self.outcome("add", err)


def first_served_by(log_dir, port, since):
    """When nginx first got a 200 from 127.0.0.1:port after `since`, or None."""
    for at, upstreams, status in access_log_lines(log_dir):
        if at > since and upstreams[-1] == f"127.0.0.1:{port}" and status == "200":
            return at
    return None


def test_a_replica_killed_under_load_loses_no_request(hub_home, milvus_uri, tmp_path):
    needs_system_package("nginx", nginx_installed)
    modules = replica_modules(milvus_uri, f"drill_{uuid.uuid4().hex[:10]}")
    workdir = tmp_path / "servers"
    first = wait_ready(launch_hub_server(hub_home, workdir, modules=modules), 240)
    replicas = [first, wait_ready(launch_hub_server(hub_home, workdir, modules=modules), 240)]
    proxy_port = free_port()
    proxy = start_nginx(tmp_path / "nginx", SITE_CONFIG, proxy_port, {8866: first.port, 8867: replicas[1].port})
    drill = Drill(f"http://127.0.0.1:{proxy_port}")
    try:
        drill.start()
        time.sleep(BEFORE_KILL_S)
        killed_at = time.time()
        first.stop(signal.SIGKILL)
        restarted = launch_hub_server(hub_home, workdir, modules=modules, port=first.port)
        replicas.append(restarted)
        wait_ready(restarted, 240)
        ready_at, deadline = time.time(), time.monotonic() + 30
        while (back_at := first_served_by(tmp_path / "nginx", first.port, killed_at)) is None:
            assert time.monotonic() < deadline, "the restarted replica took no traffic within 30 s of being ready"
            time.sleep(0.2)
        time.sleep(AFTER_BACK_S)
    finally:
        drill.stop()
        stop_nginx(proxy)
    # one add sent to each replica with the same request_id: one item, the same ids
    retried = [Client(server.url).gallery("add", images=[image_path(QUERIES[0])], labels=["drill-same-id"],
                                          request_id="drill-same-id")["ids"] for server in replicas[1:]]
    labels = Client(replicas[1].url).gallery("stats")["stats"]["labels"]
    for server in replicas:
        server.stop()
    passed_on = sum(1 for at, upstreams, _ in access_log_lines(tmp_path / "nginx") if len(upstreams) > 1)
    found = [label for label in drill.acknowledged if labels.get(label, 0) >= 1]
    duplicated = [label for label in labels if label.startswith("drill-") and labels[label] > 1]
    print(f"\nreplica drill: recognitions sent {drill.counts['recognition sent']}, failed "
          f"{drill.counts['recognition failed']}; adds sent {drill.counts['add sent']}, acknowledged "
          f"{len(drill.acknowledged)}, found {len(found)}, duplicated {len(duplicated)}, failed "
          f"{drill.counts['add failed']}; nginx passed {passed_on} on to the other replica; restarted replica "
          f"ready {ready_at - killed_at:.1f} s after the kill, "
          f"took traffic {back_at - killed_at:.1f} s after it ({back_at - ready_at:.1f} s after ready)")
    assert drill.counts["recognition failed"] == 0, drill.failures[:5]
    assert drill.counts["recognition sent"] > 0 and len(drill.acknowledged) > 0
    assert len(found) == len(drill.acknowledged) and not duplicated, (drill.failures[:5], duplicated)
    assert retried[0] == retried[1] and labels["drill-same-id"] == 1
