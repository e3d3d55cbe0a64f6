"""Idempotent gallery changes: a change sent with a client's `request_id` is made once, and every
later try of that id within WINDOW_S gets the first answer and changes nothing.

    answer = answered_once(gallery.side, request_id, lambda: {"ids": gallery.add(...)})

The record of each id lives in the gallery's side store (side_store: side.sqlite in a faiss
gallery's directory, `<collection>__side` on Milvus) under the kind "request_id", keyed by a
63-bit hash of the id and holding the id itself, so it is shared by every worker and replica
of the gallery and survives restarts and kill -9.

A try first reads the record: done -> its answer; pending (another try is making the change) ->
it waits for that try's answer, up to LEASE_S from the claim, then takes the claim over (the
other try's process died); none, or older than WINDOW_S -> it claims the id (pending), makes
the change and records the answer. A change that fails drops its claim, so a retry makes it.
A try that takes a claim over first asks `recover()` whether the dead try's change is already
there (for an add: its items, found as exact copies with their labels): a process killed after
the change but before recording its answer then costs the retry LEASE_S, not a duplicate.
What this does not cover, said plainly: the claim is a read then a write, so two tries of one
id arriving within the same few milliseconds on two processes may both make the change.
Records older than WINDOW_S are pruned every PRUNE_EVERY claims in a process.
"""
import hashlib
import json
import threading
import time
import uuid
from typing import Any, NamedTuple, Optional

from ..errors import BadRequest

KIND = "request_id"
WINDOW_S = 24 * 3600  # how long a request_id is remembered
LEASE_S = 30.0  # how long a claim is honoured before another try takes it over
POLL_S = 0.1
MAX_REQUEST_ID_CHARS = 128
PRUNE_EVERY = 1000
PRUNE_PAGE = 500


class Record(NamedTuple):
    request_id: str
    owner: str  # the claiming try's own random token
    at: float  # time.time() of the claim, or of the answer
    answer: Optional[Any]  # None while pending


def check_request_id(value):
    """A request's request_id: absent (None) or a non-empty string of at most 128 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REQUEST_ID_CHARS:
        raise BadRequest.for_field("request_id", f"expected a non-empty string of at most {MAX_REQUEST_ID_CHARS} "
                                                 f"characters (e.g. a UUID), got {value!r:.80}")
    return value


def record_key(request_id):
    """The side store key of an id: 63 bits of its SHA-256 (the record holds the id itself)."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") >> 1


def read_record(side, request_id, now):
    """This id's live record, or None (none, another id's under the same key, or past WINDOW_S)."""
    [blob] = side.get(KIND, [record_key(request_id)])
    if blob is None:
        return None
    record = Record(**json.loads(blob))
    if record.request_id != request_id or now - record.at > WINDOW_S:
        return None
    return record


def write_record(side, record):
    side.put(KIND, [record_key(record.request_id)], [json.dumps(record._asdict()).encode()])


def waited_record(side, request_id, clock, sleep):
    """The record of an earlier try, waiting while one is pending: answered, or pending past its
    lease (its try died, or outlived the lease); None when the id is free."""
    while True:
        now = clock()
        record = read_record(side, request_id, now)
        if record is None or record.answer is not None or now - record.at > LEASE_S:
            return record
        sleep(POLL_S)


def answered_once(side, request_id, change, recover=None, clock=time.time, sleep=time.sleep):
    """change() -> answer (JSON-able, not None), made once per request_id (see the module doc);
    without a request_id, simply change(). recover() -> the answer of a dead try's change found
    made, or None."""
    if request_id is None:
        return change()
    earlier = waited_record(side, request_id, clock, sleep)
    if earlier is not None and earlier.answer is not None:
        return earlier.answer
    owner = uuid.uuid4().hex
    write_record(side, Record(request_id, owner, clock(), None))
    try:
        answer = recover() if earlier is not None and recover is not None else None
        if answer is None:
            answer = change()
    except BaseException:
        side.delete([record_key(request_id)], kinds=[KIND])
        raise
    write_record(side, Record(request_id, owner, clock(), answer))
    PRUNING.after_claim(side, clock())
    return answer


class Pruning:
    """Every PRUNE_EVERY claims in this process, delete the records older than WINDOW_S."""

    def __init__(self):
        self._claims = 0
        self._lock = threading.Lock()

    def after_claim(self, side, now):
        with self._lock:
            self._claims += 1
            due = self._claims % PRUNE_EVERY == 0
        if due:
            prune(side, now)


def prune(side, now):
    """Delete the records older than WINDOW_S; returns how many."""
    expired, offset = [], 0
    while True:
        keys = side.ids(KIND, offset, PRUNE_PAGE)
        if not keys:
            break
        for key, blob in zip(keys, side.get(KIND, keys)):
            if blob is not None and now - json.loads(blob)["at"] > WINDOW_S:
                expired.append(key)
        offset += len(keys)
    if expired:
        side.delete(expired, kinds=[KIND])
    return len(expired)


PRUNING = Pruning()
