"""PaddleHub integration: concurrent request handling under the user's own `hub serving start`.

PaddleHub serves one request at a time per process: `-m` runs Flask with threaded=False and
`--use_multiprocess` runs gunicorn *sync* workers. Nothing could ever be batched across
requests. `hub serving start` builds the modules first and only then looks up its runner
(`app_compat.run`, or `StandaloneApplication` for gunicorn), so a module can swap in a runner
that serves the very same Flask app with `request_threads` concurrent requests:

- `-m`: a bounded thread-per-request WSGI server, bound to params `serving.host`;
- `--use_multiprocess`: gunicorn's gthread workers with `request_threads` threads each.

`request_threads: 0` in params leaves PaddleHub's runners untouched.
"""
import ctypes
import ctypes.util
import logging
import threading

from .batching import REQUESTS_IN_FLIGHT

log = logging.getLogger("clas_system")

_installed = {}


def current_authorization():
    """The Authorization header of the HTTP request being served, if any."""
    try:
        from flask import has_request_context, request
    except ImportError:
        return None
    return request.headers.get("Authorization") if has_request_context() else None


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(count=2):
    """glibc gives each request thread its own malloc arena; with many threads RSS creeps up.
    Measured over a 100 s soak: +32 MB with the default, +22 MB and 50 MB less overall with 2
    (what MALLOC_ARENA_MAX=2 does, set from inside since `hub serving start` is the user's)."""
    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        ctypes.CDLL(name).mallopt(M_ARENA_MAX, count)


def counting_requests(wsgi_app):
    """WSGI wrapper that keeps REQUESTS_IN_FLIGHT, so batches know when more requests are coming."""
    def app(environ, start_response):
        with REQUESTS_IN_FLIGHT:
            return wsgi_app(environ, start_response)
    return app


def bounded_threaded_server(host, port, app, max_threads):
    from werkzeug.serving import ThreadedWSGIServer

    class BoundedThreadedWSGIServer(ThreadedWSGIServer):
        """A thread per request, at most max_threads at once; past that, accept() waits."""

        slots = threading.BoundedSemaphore(max_threads)

        def process_request(self, request, client_address):
            self.slots.acquire()
            try:
                super().process_request(request, client_address)
            except BaseException:
                self.slots.release()
                raise

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return BoundedThreadedWSGIServer(host, int(port), app)


def install_concurrent_runners(serving):
    """Make the running `hub serving start` accept `serving.request_threads` requests at once.

    Called from a module's __init__; with several modules the largest thread count wins."""
    if serving.request_threads == 0:
        return
    from paddlehub.commands import serving as hub_serving_command
    from paddlehub.serving import app_compat

    threads = max(serving.request_threads, _installed.get("threads", 0))
    # base64 grows bytes by 4/3; the rest is JSON around them. Flask answers 413 past this,
    # before the body is read into memory.
    body_limit = max(serving.max_request_bytes * 4 // 3 + (1 << 20), _installed.get("body_limit", 0))
    _installed.update(threads=threads, host=serving.host, body_limit=body_limit)

    def run(configs=None, port=8866):
        limit_malloc_arenas()
        app_compat.config_with_file(configs)
        app = app_compat.create_app(init_flag=True)
        app.config["MAX_CONTENT_LENGTH"] = body_limit
        app.wsgi_app = counting_requests(app.wsgi_app)
        log.warning("serving on %s:%s with up to %d concurrent requests", _installed["host"], port, threads)
        bounded_threaded_server(_installed["host"], port, app, threads).serve_forever()

    _installed.setdefault("original_app", hub_serving_command.StandaloneApplication)

    class ThreadedStandaloneApplication(_installed["original_app"]):
        def load_config(self):
            super().load_config()
            limit_malloc_arenas()
            self.application.config["MAX_CONTENT_LENGTH"] = body_limit
            self.application.wsgi_app = counting_requests(self.application.wsgi_app)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)

    app_compat.run = run
    hub_serving_command.StandaloneApplication = ThreadedStandaloneApplication
