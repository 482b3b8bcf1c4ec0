"""Stored forms of records: orjson bytes with a schema version inside every record."""

from __future__ import annotations

import orjson

from operators.items import ItemStats
from operators.profile import Profile, ProfileRecordError


class StateCodecError(ValueError):
    """A stored value cannot be decoded."""


def encode_profile(profile: Profile) -> bytes:
    return profile.encoded()


def decode_profile(raw: bytes) -> Profile:
    try:
        return Profile.from_record(orjson.loads(raw))
    except (orjson.JSONDecodeError, ProfileRecordError, TypeError) as exc:
        raise StateCodecError(f"undecodable profile record ({len(raw)} bytes): {exc}") from exc


def profile_key(profile_id: str) -> bytes:
    return profile_id.encode("utf-8")


def encode_item(item: ItemStats) -> bytes:
    return orjson.dumps(item.to_record())


def decode_item(raw: bytes) -> ItemStats:
    try:
        return ItemStats.from_record(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise StateCodecError(f"undecodable item record ({len(raw)} bytes): {exc}") from exc
