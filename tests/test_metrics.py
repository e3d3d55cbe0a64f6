"""GET /metrics against real servers: Prometheus text whose request counter grows with traffic,
latency and batch histograms, every gunicorn worker's figures in one answer, the token, and a
gallery's size."""
import concurrent.futures
import os
import signal
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from clas_system import Client
from harness.payloads import b64, image_bytes, image_path

MODULE = "clas_system"
TEXT_UP = "textline/textline_orientation_test_0_0.png"


def classify(server, headers=None):
    """One classify request on a new connection (so gunicorn may hand it to any worker)."""
    answer = requests.post(server.predict_url(MODULE), json={"images": [b64(image_bytes(TEXT_UP))]},
                           headers=headers or {}, timeout=60)
    assert answer.status_code == 200, answer.text


def scrape(server, headers=None):
    """{sample name: {frozenset of label items: value}} from /metrics."""
    answer = requests.get(f"{server.url}/metrics", headers=headers or {}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


def ok_requests(samples):
    return value(samples, "clas_requests_total", module=MODULE, code="ok")


def assert_histograms_filled(samples, requests_seen):
    assert value(samples, "clas_request_duration_seconds_count", module=MODULE) >= requests_seen
    assert value(samples, "clas_request_duration_seconds_bucket", module=MODULE, le="+Inf") >= requests_seen
    assert sum(samples["clas_inference_duration_seconds_count"].values()) > 0
    assert sum(samples["clas_batch_size_sum"].values()) >= requests_seen
    assert value(samples, "clas_images_decoded_total") >= requests_seen
    assert value(samples, "clas_received_bytes_total", module=MODULE) > 0


def test_metrics_in_one_process(server_factory):
    server = server_factory(modules={MODULE: {"cpu_threads": 1}})
    before = scrape(server)
    for _ in range(3):
        classify(server)
    after = scrape(server)
    assert ok_requests(after) == ok_requests(before) + 3
    assert value(after, "clas_requests_total", module=MODULE, code="bad_request") == 0
    assert_histograms_filled(after, 3)
    assert value(after, "clas_requests_in_flight") == 0
    assert value(after, "clas_process_resident_memory_bytes") > 10 * 2 ** 20


def serving_workers(samples):
    """{pid: RSS} of the workers that have started serving (a worker still warming up reports 0)."""
    resident = samples.get("clas_process_resident_memory_bytes", {})
    return {dict(labels)["pid"]: rss for labels, rss in resident.items() if rss > 0}


def wait_for_workers(server, count, timeout_s=120):
    """/ready answers once one worker is up; the others may still be loading their models."""
    deadline = time.monotonic() + timeout_s
    while len(serving_workers(scrape(server))) < count:
        assert time.monotonic() < deadline, f"{count} workers did not all start serving in {timeout_s} s"
        time.sleep(0.5)


def test_metrics_add_up_gunicorn_workers(server_factory):
    server = server_factory(modules={MODULE: {"cpu_threads": 1}}, use_multiprocess=True, workers=2)
    wait_for_workers(server, 2)
    for _ in range(8):
        classify(server)
    totals = {ok_requests(scrape(server)) for _ in range(4)}  # each scrape may be answered by either worker
    assert totals == {8}
    samples = scrape(server)
    assert_histograms_filled(samples, 8)
    assert len(serving_workers(samples)) == 2
    assert all(rss > 10 * 2 ** 20 for rss in serving_workers(samples).values())

    killed = next(iter(serving_workers(samples)))
    os.kill(int(killed), signal.SIGKILL)  # gunicorn forks a new worker; the dead one's live gauges go
    deadline = time.monotonic() + 120
    while True:
        workers = serving_workers(scrape(server))
        if killed not in workers and len(workers) == 2:
            break
        assert time.monotonic() < deadline, f"worker {killed} still reported, or no new worker: {workers}"
        time.sleep(0.5)
    assert ok_requests(scrape(server)) == 8  # counters of a dead worker still count


def test_metrics_need_the_api_token(server_factory):
    server = server_factory(modules={MODULE: {"api_token": "s3cret", "cpu_threads": 1}})
    refused = requests.get(f"{server.url}/metrics", timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer nope"},
                        timeout=30).status_code == 401
    token = {"Authorization": "Bearer s3cret"}
    classify(server, headers=token)
    assert ok_requests(scrape(server, headers=token)) == 1


def test_a_metrics_token_replaces_the_api_token_for_metrics_only(server_factory):
    server = server_factory(modules={MODULE: {"api_token": "s3cret", "metrics_token": "scrape", "cpu_threads": 1}})
    assert requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer s3cret"},
                        timeout=30).status_code == 401
    assert ok_requests(scrape(server, headers={"Authorization": "Bearer scrape"})) == 0
    refused = requests.post(server.predict_url(MODULE), json={"images": [b64(image_bytes(TEXT_UP))]},
                            headers={"Authorization": "Bearer scrape"}, timeout=60)
    assert refused.status_code == 401



def test_gallery_items_follow_the_gallery(server_factory, tmp_path):
    server = server_factory(modules={"rec_system": {"index_dir": str(tmp_path / "gallery"), "detector": None,
                                                    "feature": {"preset": "pplcnet_pulc_1280"}}})
    assert value(scrape(server), "clas_gallery_items", module="rec_system") == 0
    Client(server.url).gallery("add", images=[image_path("drink/youjia.jpeg"), image_path(TEXT_UP)],
                               labels=["youjia", "text"])
    samples = scrape(server)
    assert value(samples, "clas_gallery_items", module="rec_system") == 2
    assert value(samples, "clas_requests_total", module="rec_system", code="ok") >= 1


def test_overload_refusals_are_counted(server_factory):
    server = server_factory(modules={MODULE: {"request_threads": 1, "max_waiting_requests": 0, "cpu_threads": 1}})
    body = {"images": [b64(image_bytes(TEXT_UP))] * 4}

    def status(_):
        return requests.post(server.predict_url(MODULE), json=body, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(status, range(64)))
    samples = scrape(server)
    assert 503 in statuses and 200 in statuses
    assert value(samples, "clas_requests_total", module=MODULE, code="overloaded") == statuses.count(503)
    assert ok_requests(samples) == statuses.count(200)
    assert sum(samples["clas_overload_refusals_total"].values()) == statuses.count(503)
    assert value(samples, "clas_requests_in_flight") == 0 and value(samples, "clas_requests_waiting") == 0
