"""Idempotent gallery adds (gallery.request_ids): an add sent again with the same request_id
answers as the first try and adds nothing, across gunicorn workers and a kill -9 restart; the
ledger's rules on a real side store with a fake clock."""
import json
import signal
import socket
import time

import pytest

from clas_system import BadRequestError, Client
from clas_system.errors import BadRequest
from clas_system.gallery import request_ids
from clas_system.gallery.request_ids import LEASE_S, WINDOW_S, Record, answered_once, prune, write_record
from clas_system.gallery.side_store import SqliteSideStore
from harness.payloads import b64, image_bytes, image_path

LIGHT = {"feature": {"preset": "pplcnet_pulc_1280"}, "detector": None}
COCO = "misc/coco_000000570688.jpg"
WANGZAI = "misc/wangzai.jpg"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def side(tmp_path):
    store = SqliteSideStore(str(tmp_path))
    yield store
    store.close()


def counted(answer):
    calls = []

    def change():
        calls.append(1)
        return answer
    return change, calls


def test_the_same_request_id_changes_once(side):
    change, calls = counted({"ids": [7]})
    assert answered_once(side, "a", change) == answered_once(side, "a", change) == {"ids": [7]}
    assert answered_once(side, "b", change) == {"ids": [7]} and len(calls) == 2
    assert answered_once(side, None, change) and len(calls) == 3  # no request_id: every call changes


def test_a_failed_change_leaves_the_id_free(side):
    def failing():
        raise BadRequest("labels: bad")

    with pytest.raises(BadRequest):
        answered_once(side, "a", failing)
    change, calls = counted({"ids": [1]})
    assert answered_once(side, "a", change) == {"ids": [1]} and calls == [1]


def test_a_pending_try_is_waited_for_then_taken_over_after_the_lease(side):
    clock = Clock()
    write_record(side, Record("dead", "other", clock(), None))
    change, calls = counted({"ids": [2]})
    assert answered_once(side, "dead", change, clock=clock, sleep=clock.sleep) == {"ids": [2]}
    assert calls == [1] and LEASE_S <= clock.now - 1_000_000.0 < LEASE_S + 1

    write_record(side, Record("live", "other", clock(), None))

    def finish_meanwhile(seconds):  # the other try records its answer while this one waits
        clock.sleep(seconds)
        write_record(side, Record("live", "other", clock(), {"ids": [3]}))

    assert answered_once(side, "live", change, clock=clock, sleep=finish_meanwhile) == {"ids": [3]} and calls == [1]


def test_a_take_over_answers_what_the_dead_try_made(side):
    """The dead try's change found made (recover) is the answer: no second change."""
    clock = Clock()
    write_record(side, Record("made", "other", clock(), None))
    change, calls = counted({"ids": [9]})
    assert answered_once(side, "made", change, recover=lambda: {"ids": [5]}, clock=clock,
                         sleep=clock.sleep) == {"ids": [5]}
    assert answered_once(side, "made", change, clock=clock) == {"ids": [5]} and calls == []
    assert answered_once(side, "fresh", change, recover=lambda: {"ids": [5]}) == {"ids": [9]}  # no claim to take over


def test_ids_are_remembered_for_the_window_then_pruned(side):
    clock = Clock()
    change, calls = counted({"ids": [4]})
    answered_once(side, "old", change, clock=clock, sleep=clock.sleep)
    clock.now += WINDOW_S / 2
    answered_once(side, "new", change, clock=clock, sleep=clock.sleep)
    answered_once(side, "old", change, clock=clock, sleep=clock.sleep)
    assert len(calls) == 2
    clock.now += WINDOW_S / 2 + 1
    assert prune(side, clock()) == 1 and side.count(request_ids.KIND) == 1
    answered_once(side, "old", change, clock=clock, sleep=clock.sleep)
    assert len(calls) == 3


@pytest.mark.parametrize("value", ["", " ", 5, "x" * 129, ["a"]])
def test_a_bad_request_id_is_refused_naming_it(value):
    with pytest.raises(BadRequest, match="request_id"):
        request_ids.check_request_id(value)


def post_and_hang_up(server, payload):
    """POST a whole request, then close the connection before any answer comes back."""
    body = json.dumps(payload).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(b"POST /predict/rec_system HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        conn.shutdown(socket.SHUT_RDWR)


def test_an_add_retried_after_its_answer_was_lost_adds_one_item(server_factory, tmp_path):
    modules = {"rec_system": {"index_dir": str(tmp_path / "gallery"), **LIGHT}}
    server = server_factory(modules=modules, use_multiprocess=True, workers=2)
    client = Client(server.url)
    add = {"gallery": "add", "images": [b64(image_bytes(COCO))], "labels": ["coco"], "request_id": "add-1"}
    post_and_hang_up(server, add)
    deadline = time.monotonic() + 60
    while client.gallery("stats")["stats"]["count"] == 0:  # the first try was made; its answer went nowhere
        assert time.monotonic() < deadline, "the add whose connection closed was never made"
        time.sleep(0.2)
    first = client.gallery("add", images=[image_path(COCO)], labels=["coco"], request_id="add-1")
    again = [server.post("rec_system", add)["results"]["ids"] for _ in range(4)]  # on either worker
    assert again == [first["ids"]] * 4
    assert client.gallery("stats")["stats"]["count"] == 1
    other = client.gallery("add", images=[image_path(COCO)], labels=["coco"])  # a new call: a new id
    assert other["ids"] != first["ids"] and client.gallery("stats")["stats"]["count"] == 2

    # a try killed after adding but before recording its answer: its retry finds the item
    made = client.gallery("add", images=[image_path(WANGZAI)], labels=["wangzai"])["ids"]
    side = SqliteSideStore(str(tmp_path / "gallery"))
    write_record(side, Record("add-2", "dead", time.time() - LEASE_S - 1, None))
    side.close()
    assert client.gallery("add", images=[image_path(WANGZAI)], labels=["wangzai"], request_id="add-2")["ids"] == made
    assert client.gallery("stats")["stats"]["count"] == 3

    server.stop(signal.SIGKILL)
    client = Client(server_factory(modules=modules).url)
    assert client.gallery("add", images=[image_path(COCO)], labels=["coco"], request_id="add-1")["ids"] == first["ids"]
    assert client.gallery("stats")["stats"]["count"] == 3
    with pytest.raises(BadRequestError, match="request_id"):
        client.gallery("add", images=[image_path(COCO)], labels=["coco"], request_id="x" * 200)
