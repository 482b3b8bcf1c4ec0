"""PII at ingestion: normalize, then hash with a keyed hash, before anything is stored.

Raw emails and phone numbers exist only inside the parser. What is kept is
``HMAC-SHA256(secret, kind + ":" + normalized value)``, truncated to 128 bits (32 hex
chars): stable for joining identities, useless without the secret for guessing emails.

>>> key = b"test-secret"
>>> hash_email(" Alice@Example.COM ", key) == hash_email("alice@example.com", key)
True
>>> hash_phone("+49 (30) 1234-567", key) == hash_phone("+49301234567", key)
True
>>> len(hash_email("a@b.c", key)), hash_email("a@b.c", key) != hash_email("a@b.c", b"other")
(32, True)
>>> scrub_record(b'{"email": "Bob@x.org", "type": 1}', key)
(b'{"email":"<redacted>","type":1}', ['email'])
>>> scrub_record(b'not json bob@x.org "phone": "+1 555 0100"', key)
(b'not json <redacted-email> "phone": "<redacted>"', ['email', 'phone'])
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson

PII_FIELDS = ("email", "phone")
# Local part: RFC 5322 atext and dots (``!#$%&'*+/=?^_`{|}~`` are legal: ``*@a.ae`` is an address).
_EMAIL_RE = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PHONE_FIELD_RE = re.compile(rb'("phone"\s*:\s*)"[^"]*"')
_EMAIL_FIELD_RE = re.compile(rb'("email"\s*:\s*)"[^"]*"')


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    value = value.strip()
    digits = "".join(ch for ch in value if ch.isdigit())
    return ("+" + digits) if value.startswith("+") else digits


def _hash(kind: str, normalized: str, key: bytes) -> str:
    return hmac.new(key, f"{kind}:{normalized}".encode(), hashlib.sha256).hexdigest()[:32]


def hash_email(value: str, key: bytes) -> str:
    return _hash("email", normalize_email(value), key)


def hash_phone(value: str, key: bytes) -> str:
    return _hash("phone", normalize_phone(value), key)


def scrub_record(raw: bytes | None, key: bytes) -> tuple[bytes | None, list[str]]:
    """The record with raw PII removed, for the dead-letter topic, and what was removed.

    A JSON object keeps its shape with ``email``/``phone`` (top level and in ``traits``)
    replaced by ``"<redacted>"``; anything else has email-looking text and
    ``"phone": "..."`` / ``"email": "..."`` fragments redacted.
    """
    if not raw:
        return raw, []
    removed: list[str] = []
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        for holder in (doc, doc.get("traits")):
            if isinstance(holder, dict):
                for field in PII_FIELDS:
                    if field in holder:
                        holder[field] = "<redacted>"
                        if field not in removed:
                            removed.append(field)
        return (orjson.dumps(doc) if removed else raw), removed
    out = raw
    out, n_field = _EMAIL_FIELD_RE.subn(rb'\1"<redacted>"', out)
    out, n_email = _EMAIL_RE.subn(b"<redacted-email>", out)
    if n_field or n_email:
        removed.append("email")
    out, n_phone = _PHONE_FIELD_RE.subn(rb'\1"<redacted>"', out)
    if n_phone:
        removed.append("phone")
    return out, removed
