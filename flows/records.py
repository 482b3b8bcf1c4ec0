"""Messages that travel between the steps of the profile flow."""

from __future__ import annotations

from dataclasses import dataclass

from operators.events import Event, InvalidEvent


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record, whatever the source: bytes plus where they came from."""

    value: bytes | None
    key: bytes | None
    source: str  # "topic/partition" (or "generator/0"): the unit of ordering and offsets
    offset: int
    ingest_ms: int  # broker append time, or when the generator made the record


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    event: Event
    source: str
    offset: int
    ingest_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that is not a valid event: the original bytes, why, and where from."""

    record: RawRecord
    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """A profile's new stored record, emitted once per batch that changed it."""

    profile_id: str
    record: bytes
    applied: int  # events applied in this batch
    oldest_ingest_ms: int
    newest_event_ms: int
