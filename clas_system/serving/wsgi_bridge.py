"""PaddleHub's own Flask app behind our ASGI front: an ASGI request handed to a WSGI app once,
its answer handed back (PaddleHub's index page, and pages registered on its app such as /ui/)."""
import io
import sys


def wsgi_environ(scope, body):
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("127.0.0.1", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for key, value in scope["headers"]:
        name = key.decode("latin-1").upper().replace("-", "_")
        value = value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name != "CONTENT_LENGTH":
            environ[f"HTTP_{name}"] = f"{environ[f'HTTP_{name}']},{value}" if f"HTTP_{name}" in environ else value
    return environ


def call_wsgi(app, scope, body):
    """A WSGI app called once -> (status, headers, body bytes)."""
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]

    chunks = app(wsgi_environ(scope, body), start_response)
    try:
        answer = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    headers = [(k, v) for k, v in started["headers"] if k != b"content-length"]
    return started["status"], headers + [(b"content-length", str(len(answer)).encode())], answer
