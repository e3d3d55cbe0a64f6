"""The server: what `hub serving start` runs around the engine.

classify, detect, recognition: each module's requests parsed and bounded (with fields, the checks
they share) and run on its task; http_app: the HTTP front (admission, the wire envelope, errors
mapped once); wsgi_bridge: PaddleHub's Flask app behind it; hubserving: our runners swapped into
PaddleHub's command; startup: a module's start-up failure as one line; webui: the pages at /ui/.
"""
