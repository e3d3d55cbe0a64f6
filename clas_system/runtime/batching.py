"""Dynamic batching as one reusable piece, in the spirit of Ray Serve's `@serve.batch`.

`batch(max_batch_size, batch_wait_s)` wraps a function that takes a list of items and returns a
list of the same length. Callers pass the items of one request and get exactly their results
back; concurrent callers are merged into shared calls of up to `max_batch_size` items.

A batch waits for more items only while another request is on its way, and never longer than
`batch_wait_s`: a lone client pays no added latency. "On its way" counts callers preparing
their items and, when the server layer reports them through `REQUESTS_IN_FLIGHT`, HTTP requests
still being read and parsed. The second matters with Paddle Inference, whose run() holds the
GIL: without the wait, the batch thread takes the GIL back before parsing requests can queue,
and batches stay at one or two items.

Each model batch is reported to `clas_system.hooks.BATCH_RAN` (its size and run time).
"""
import os
import queue
import threading
import time

from ..hooks import BATCH_RAN


class RequestGauge:
    """How many requests this process is serving right now; `with REQUESTS_IN_FLIGHT:` counts one."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.count += 1

    def __exit__(self, *exc):
        with self._lock:
            self.count -= 1


REQUESTS_IN_FLIGHT = RequestGauge()


class _Request:
    __slots__ = ("items", "results", "error", "done")

    def __init__(self, items):
        self.items = items
        self.results = None
        self.error = None
        self.done = threading.Event()


class DynamicBatcher:
    def __init__(self, run_batch, max_batch_size, batch_wait_s):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.run_batch = run_batch
        self.model_name = getattr(run_batch, "__qualname__", type(run_batch).__name__)
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._pid = None
        self._lock = threading.Lock()

    def __call__(self, items):
        """`items`: a list, or a function returning one, called in the caller's thread (so the
        batch knows this request is coming while it decodes; its errors are the caller's).
        Queues the items and blocks until their results are ready."""
        self._start_in_this_process()
        with self._lock:
            self._coming += 1
        try:
            prepared = list(items() if callable(items) else items)
            request = _Request(prepared)
            if prepared:
                self._queue.put(request)
        finally:
            with self._lock:
                self._coming -= 1
        if not prepared:
            return []
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.results

    def _start_in_this_process(self):
        # The worker thread and queue belong to one process: gunicorn forks workers after the
        # module is built, and threads do not survive a fork.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue()
            self._coming = 0
            threading.Thread(target=self._serve, name="dynamic-batcher", daemon=True).start()
            self._pid = os.getpid()

    def _collect(self):
        batch = [self._queue.get()]
        size = len(batch[0].items)
        deadline = time.monotonic() + self.batch_wait_s
        while size < self.max_batch_size:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                others_on_the_way = self._coming > 0 or REQUESTS_IN_FLIGHT.count > len(batch)
                if remaining <= 0 or not others_on_the_way:
                    break
                try:
                    request = self._queue.get(timeout=min(remaining, 0.0005))
                except queue.Empty:
                    continue
            batch.append(request)
            size += len(request.items)
        return batch

    def _serve(self):
        while True:
            self._run(self._collect())

    def _run(self, requests):
        items = [item for request in requests for item in request.items]
        try:
            results = self._call_in_chunks(items)
        except Exception as err:  # noqa: BLE001 - isolated below so each request gets its own error
            if len(requests) == 1:
                self._finish(requests[0], error=err)
                return
            for request in requests:
                try:
                    self._finish(request, results=self._call_in_chunks(request.items))
                except Exception as own_err:  # noqa: BLE001 - handed to the request that caused it
                    self._finish(request, error=own_err)
            return
        start = 0
        for request in requests:
            self._finish(request, results=results[start:start + len(request.items)])
            start += len(request.items)

    def _call_in_chunks(self, items):
        results = []
        for start in range(0, len(items), self.max_batch_size):
            chunk = items[start:start + self.max_batch_size]
            started = time.perf_counter()
            out = self.run_batch(chunk)
            BATCH_RAN(self.model_name, len(chunk), time.perf_counter() - started)
            if len(out) != len(chunk):
                raise RuntimeError(f"batched function returned {len(out)} results for {len(chunk)} items")
            results.extend(out)
        return results

    @staticmethod
    def _finish(request, results=None, error=None):
        request.results, request.error = results, error
        request.done.set()


def batch(max_batch_size, batch_wait_s):
    """Decorator: `@batch(8, 0.002) def run(items): return [...]` -> a DynamicBatcher."""
    return lambda run_batch: DynamicBatcher(run_batch, max_batch_size, batch_wait_s)


def serving_batcher(run_batch, serving):
    """A DynamicBatcher with a module's serving settings (batch_size, batch_wait_ms)."""
    return DynamicBatcher(run_batch, serving.batch_size, serving.batch_wait_ms / 1000.0)
