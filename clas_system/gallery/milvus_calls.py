"""Calling pymilvus: importing it on demand, what its failures are, and the deadline of one call."""
from ..errors import GalleryError, short


def import_pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise GalleryError("the milvus gallery backend needs pymilvus: pip install '.[milvus]' "
                           "(pymilvus<2.6, milvus-lite)") from None
    return pymilvus


def call_failures():
    """What pymilvus raises when a call fails: its own exception, or gRPC's (DEADLINE_EXCEEDED
    and a few other codes come through raw)."""
    import grpc
    return import_pymilvus().exceptions.MilvusException, grpc.RpcError


def failure_text(error):
    if isinstance(error, import_pymilvus().exceptions.MilvusException):
        return short(str(error.message), 300)
    return short(f"{error.code().name}: {error.details()}", 300)


def deadline(settings, slow=False):
    """The keyword arguments bounding one pymilvus call. The timeout is an int on purpose: pymilvus
    bounds its retries of a refused call by the timeout only when it is an int; with a float (or
    none) it tries 75 times with growing back-off, minutes against a dead server (pymilvus#1848)."""
    return {"timeout": int(settings.load_timeout_s if slow else settings.timeout_s)}
