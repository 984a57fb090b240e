"""The redirect table: every link's answer in one file, memory-mapped by the
workers (docs/performance.md, 2026-12-02).

A redirect-cache miss read its row from SQLite: one statement through Python's
`sqlite3`, about 10 µs of a worker's event loop, and under traffic spread over
1,000,000 links nearly every request misses. This file answers the same
question from a hash table in the page cache, shared by every worker, in 1-3
µs (in-process: 1.3 hot, 2-3.5 over 1,000,000 at random). It holds what the
fast path would cache for each link (links.fastpath.cached_link: its id, its
Location and how long it holds, or "Django answers this one"), as of one
links version: a worker trusts it only while the database's links version is
still that one, and a slug it does not hold (a link created since) is read from
the database as before.

Built whole by `manage.py build_redirect_table` (links.fastpath.build_redirect_table),
in a process of its own, so no worker's interpreter spends seconds on it, and
renamed into place: a reader maps either the old file or the new one.

The layout, in the machine's byte order (the file is built and read on one
machine): a header (HEADER), then `slot_count` 8-byte slots, then the records.
A slot is empty (0) or holds a slug's CRC-32 in its top half and its record's
offset in 8-byte units in its bottom half; a slug's first slot is its CRC-32
modulo the slot count, and the next ones follow (linear probing, at most half
the slots used). A record (RECORD) is the link's id (0: Django answers it), the
seconds since the epoch after which it no longer holds, the lengths of the slug
and the Location, then the slug's and the Location's bytes, padded to 8 bytes.
"""

import mmap
import os
import struct
import time
from array import array
from collections.abc import Iterable
from pathlib import Path
from zlib import crc32

# manage.py build_redirect_table's exit status when another build holds the
# lock (sysexits.h's EX_TEMPFAIL): not a failure, and no table of its own.
BUILD_UNDER_WAY = 75

MAGIC = b"SHRTTBL1"
# magic, links version, database identity (PRAGMA user_version), slot count,
# links held, the largest link id read, the file's length, and when its build
# started and ended (seconds since the epoch).
HEADER = struct.Struct("=8sqqqqqqdd")
HEADER_BYTES = 128
RECORD = struct.Struct("=qdHH")
# A record's slug and Location are at most this long (their lengths are 16-bit):
# a longer Location is kept as DELEGATE (Django answers it), a longer slug not
# at all (the fast path asks for slugs of at most 64 characters).
LONGEST_FIELD = 0xFFFF
SLOT_BYTES = 8
OFFSET_UNIT = 8

# A cached link: (link id, its Location's bytes, the seconds since the epoch
# after which it no longer holds: its expiry). A plain tuple of a number, bytes
# and a float, not a dataclass: CPython's collector stops tracking such a tuple
# once it has seen it, so a full cache adds nothing to the collector's full
# passes. Those walked every cached object (with start-up's and the click
# tally's) and paused a worker for 55-125 ms at 1,000,000 links
# (docs/performance.md, 2026-11-29, evening).
CachedLink = tuple[int, bytes, float]
# A cached answer that the fast path does not give: Django decides.
DELEGATE: CachedLink = (0, b"", 0.0)


class TableError(ValueError):
    """A file that is not a whole redirect table."""


def file_stamp(known: os.stat_result) -> tuple[int, int, int]:
    """Which file a path names: a rebuilt table is another file, renamed over it."""
    return (known.st_dev, known.st_ino, known.st_mtime_ns)


def slot_count_for(links: int) -> int:
    """A power of two at least twice `links`: probes stay short."""
    count = 1024
    while count < 2 * links:
        count *= 2
    return count


def _padded(length: int) -> int:
    return -(-length // OFFSET_UNIT) * OFFSET_UNIT


def write_table(
    path: Path,
    *,
    version: int,
    identity: int,
    max_link_id: int,
    link_count: int,
    entries: Iterable[tuple[bytes, CachedLink]],
    started_at: float | None = None,
) -> None:
    """Write a table of `entries` (at most `link_count` of them: slug bytes and
    the cached link) to `path`, synced, for a rename into place. `started_at`:
    when the build began (by default, now)."""
    if started_at is None:
        started_at = time.time()
    slot_count = slot_count_for(link_count)
    mask = slot_count - 1
    slots = array("Q", bytes(SLOT_BYTES * slot_count))
    records_start = HEADER_BYTES + SLOT_BYTES * slot_count
    offset = records_start
    held = 0
    with open(path, "wb") as file:
        file.seek(records_start)
        chunk = bytearray()
        for slug, entry in entries:
            if len(slug) > LONGEST_FIELD:
                continue
            held += 1
            if held > link_count:
                raise ValueError("more entries than link_count")
            if len(entry[1]) > LONGEST_FIELD:
                entry = DELEGATE
            link_id, location, valid_until = entry
            record = RECORD.pack(link_id, valid_until, len(slug), len(location)) + slug + location
            record += bytes(_padded(len(record)) - len(record))
            tag = crc32(slug)
            index = tag & mask
            while slots[index]:
                index = (index + 1) & mask
            slots[index] = (tag << 32) | (offset // OFFSET_UNIT)
            chunk += record
            offset += len(record)
            if len(chunk) >= 1 << 20:
                file.write(chunk)
                chunk.clear()
        file.write(chunk)
        if offset // OFFSET_UNIT >= 1 << 32:
            raise ValueError("a redirect table of 32 GiB or more")
        file.seek(0)
        header = HEADER.pack(
            MAGIC, version, identity, slot_count, held, max_link_id, offset, started_at, time.time()
        )
        file.write(header.ljust(HEADER_BYTES, b"\0"))
        file.write(slots)
        file.flush()
        os.fsync(file.fileno())


class RedirectTable:
    """A table file mapped read-only. Its pages are the page cache's, shared by
    every process that maps it: a worker's own memory holds none of them."""

    __slots__ = (
        "_end",
        "_map",
        "_mask",
        "_slots",
        "build_ended_at",
        "build_started_at",
        "identity",
        "link_count",
        "max_link_id",
        "stamp",
        "version",
    )

    def __init__(self, path: Path):
        with open(path, "rb") as file:
            known = os.fstat(file.fileno())
            if known.st_size < HEADER_BYTES:
                raise TableError(f"{path}: too short for a redirect table")
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        magic, version, identity, slot_count, link_count, max_link_id, length, started, ended = (
            HEADER.unpack_from(mapped)
        )
        if (
            magic != MAGIC
            or slot_count < 1
            or slot_count & (slot_count - 1)
            or length != known.st_size
            or HEADER_BYTES + SLOT_BYTES * slot_count > length
        ):
            raise TableError(f"{path}: not a whole redirect table")
        self._map = mapped
        self._slots = memoryview(mapped)[HEADER_BYTES : HEADER_BYTES + SLOT_BYTES * slot_count].cast("Q")
        self._mask = slot_count - 1
        self.version = version
        self.identity = identity
        self.link_count = link_count
        self.max_link_id = max_link_id
        self.build_started_at = started
        self.build_ended_at = ended
        self.stamp = file_stamp(known)
        self._end = length

    def get(self, slug: str) -> CachedLink | None:
        """`slug`'s cached link, DELEGATE, or None if the table holds no such slug."""
        key = slug.encode("ascii")
        tag = crc32(key)
        slots = self._slots
        mask = self._mask
        index = tag & mask
        data = self._map
        while slot := slots[index]:
            if slot >> 32 == tag:
                offset = (slot & 0xFFFFFFFF) * OFFSET_UNIT
                if offset + RECORD.size > self._end:
                    return None  # a damaged file: the database answers
                link_id, valid_until, slug_length, location_length = RECORD.unpack_from(data, offset)
                start = offset + RECORD.size
                if data[start : start + slug_length] == key:
                    if link_id == 0:
                        return DELEGATE
                    start += slug_length
                    return (link_id, data[start : start + location_length], valid_until)
            index = (index + 1) & mask
        return None
