"""The write-ahead log: one self-checking record per add/remove since the snapshot.

Each record is fsync'd before the call that made it returns, so a returned call survives kill -9.
Only the final record can be torn (a crash mid-append, never acknowledged): readers stop before
it and the next writer cuts it off. A bad record followed by an intact one is damage, and raises.
Records carry increasing sequence numbers; compaction replaces the log file with an empty one
(a new inode), which tells processes following the old file to reload the snapshot.
"""
import json
import os
import struct
import zlib

from ..errors import GalleryError

WAL = "gallery.wal"
RECORD_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
RECORD_MAGIC = b"GWAL"


def encode_record(header, body=b""):
    """One self-checking log record: magic, payload length, crc32, then the payload
    (4-byte JSON length, JSON header with seq/op/ids..., raw vector bytes)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    payload = struct.pack("<I", len(head)) + head + body
    return RECORD_HEADER.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _record_at(data, pos):
    """(payload, end) of the intact record at `pos`, or None if there is none."""
    if len(data) - pos < RECORD_HEADER.size:
        return None
    magic, length, crc = RECORD_HEADER.unpack_from(data, pos)
    start, end = pos + RECORD_HEADER.size, pos + RECORD_HEADER.size + length
    if magic != RECORD_MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
        return None
    return data[start:end], end


def _intact_record_after(data, pos):
    found = data.find(RECORD_MAGIC, pos)
    while found != -1:
        if _record_at(data, found) is not None:
            return found
        found = data.find(RECORD_MAGIC, found + 1)
    return None


def _decode_payload(payload, path, pos):
    try:
        (head_length,) = struct.unpack_from("<I", payload)
        header = json.loads(bytes(payload[4:4 + head_length]))
        return header, payload[4 + head_length:]
    except (struct.error, ValueError) as e:
        raise GalleryError(f"{path}: record at byte {pos} passes its checksum but cannot be decoded ({e})") from None


def read_wal(path, start=0):
    """[(header, body)] of the intact records from byte `start` on, and the byte offset where they end."""
    with open(path, "rb") as f:
        f.seek(start)
        data = memoryview(f.read())
    records, pos = [], 0
    while pos < len(data):
        record = _record_at(data, pos)
        if record is None:
            later = _intact_record_after(data.obj, pos + 1)
            if later is not None:
                raise GalleryError(
                    f"{path}: record at byte {start + pos} is corrupt and an intact record follows at byte "
                    f"{start + later}; the log is damaged (not a torn final write), so the gallery refuses to "
                    f"open rather than lose acknowledged changes")
            break
        payload, end = record
        records.append(_decode_payload(payload, path, start + pos))
        pos = end
    return records, start + pos


def append_record(path, record, size):
    """Append `record` to a log of `size` intact bytes and fsync it; on failure cut the log back."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(record)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            raise GalleryError(f"{path}: cannot write the log ({e}) nor undo the partial write; the change "
                               f"may or may not be kept") from None
        raise GalleryError(f"{path}: cannot write the log ({e}); the change was not made") from None
    finally:
        os.close(fd)


def cut_log(path, size):
    """Drop a torn final record (a crashed writer's, never acknowledged) before appending after it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_new_log(directory):
    """Replace the log with an empty file (atomically, so followers notice by its new inode)."""
    temp = directory / (WAL + ".tmp")
    try:
        with open(temp, "wb") as f:
            os.fsync(f.fileno())
        os.replace(temp, directory / WAL)
        fsync_directory(directory)
    except OSError as e:
        raise GalleryError(f"{directory / WAL}: the snapshot was saved but the log could not be emptied ({e}); "
                           f"its records are already in the snapshot and are skipped on open") from None


def log_identity(stat):
    """What tells one log file from its replacement."""
    return stat.st_dev, stat.st_ino
