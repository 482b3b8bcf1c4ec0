"""GDPR/CCPA export: everything the store holds about one person, as a JSON document."""

from __future__ import annotations

from typing import Any

from operators.identity import is_alias
from state.store import ProfileReader


def resolve(reader: ProfileReader, user: str) -> str | None:
    """The profile id for a user id or a typed alias (``anon:…``, ``email:<hash>``, …)."""
    alias = user if is_alias(user) else "user:" + user
    return reader.profile_of(alias)


def export_user(reader: ProfileReader, user: str) -> dict[str, Any] | None:
    """The stored profile record and the aliases linked to it; None if nothing is stored."""
    pid = resolve(reader, user)
    if pid is None:
        return None
    profile = reader.get(pid)
    return {
        "profile_id": pid,
        "aliases": list(reader.members_of(pid) or ()),
        "profile": None if profile is None else profile.to_record(),
        "notes": {
            "email": "emails and phone numbers are stored only as keyed hashes (HMAC-SHA256, 128 bits)",
            "seen": "digests of recent event ids, kept for deduplication",
        },
    }
