"""A document's digest: what reconcile compares to find content drift (docs/reconcile.md). Pure.

::

    document --documents.dumps--> JSON bytes --BLAKE2b-128--> 32 hex digits
    stamp(): the bytes with ``,"indexer_digest":"<hex>"`` spliced in before the final ``}`` (no re-serialising)
    of_line(): the digest back out of a stamped action line (the source side of reconcile)
    of_source(): the digest out of a hit's ``_source`` (the index side); "" when it has none

The digest is of the document as encoded without the field, after the transform, so it changes
exactly when the bytes sent would change. BLAKE2b with 16 bytes: as fast as MD5 in CPython's
hashlib, and a collision (a change missed) is out of reach by chance.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from typing import Any

FIELD = "indexer_digest"
# How init maps it (docs/nested.md): stored in _source, never searched or sorted on (reconcile filters _source).
MAPPING = {"type": "keyword", "index": False, "doc_values": False}
SIZE = 16  # bytes: 32 hex digits
_HEX = re.compile(f"[0-9a-f]{{{2 * SIZE}}}")


def of(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=SIZE).hexdigest()


_OPEN = f',"{FIELD}":"'.encode()
_blake2b, _hexlify = hashlib.blake2b, binascii.hexlify  # once per document: the names looked up once


def stamp(body: bytes) -> bytes:
    """A JSON object's bytes with the digest of those bytes as its last field."""
    hex_ = _hexlify(_blake2b(body, digest_size=SIZE).digest())  # bytes at once: no str to encode
    return body[:-1] + (_OPEN if len(body) > 2 else _OPEN[1:]) + hex_ + b'"}'


def of_line(line: bytes) -> str:
    """The digest of a stamped index action line (``...,"indexer_digest":"<hex>"}\\n``)."""
    return line[-(2 * SIZE + 3):-3].decode("ascii")


def of_source(source: Any) -> str:
    """A hit's stored digest; "" when the document has none (written before digest was on) or an odd one."""
    value = source.get(FIELD) if isinstance(source, dict) else None
    return value if isinstance(value, str) and _HEX.fullmatch(value) else ""
