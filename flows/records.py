"""Messages that travel between the steps of the profile flow."""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.events import Event, InvalidEvent
from operators.identity import Routing


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record, whatever the source: bytes plus where they came from."""

    value: bytes | None
    key: bytes | None
    source: str  # "topic/partition" (or "generator/0"): the unit of ordering and offsets
    offset: int
    ingest_ms: int  # broker append time, or when the generator made the record


@dataclass(frozen=True, slots=True)
class Tick:
    """A source's heartbeat: wakes the segment timers. ``watermark_ms`` is set when the
    source is caught up (its event time may follow the wall clock), else None."""

    source: str
    watermark_ms: int | None = None
    final: bool = False  # the source has ended: it no longer holds timers back
    upto: int = 0  # events parsed from the source before this tick (since the process started)


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    event: Event
    source: str
    offset: int
    ingest_ms: int
    # The highest event time read from ``source`` up to and including this record: what
    # "now" is for its partition (segment instants before it have passed).
    watermark_ms: int = 0
    record: RawRecord | None = None  # the original bytes, for the dead-letter topic (too late)


@dataclass(frozen=True, slots=True)
class ParsedExposure:
    """An experiment exposure (from the exposures topic), to join with later outcomes."""

    unit: str  # the typed alias the assignment hashed (a profile id or a request alias)
    experiment_id: str
    variant_id: str
    ts_ms: int
    source: str
    offset: int
    ingest_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that is not a valid event: the original bytes, why, and where from."""

    record: RawRecord
    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class EraseRequest:
    """A GDPR/CCPA erase command (from the control topic): forget ``alias``'s person."""

    alias: str
    request_id: str
    requested_ms: int


@dataclass(frozen=True, slots=True)
class Routed:
    """An event (or an erase request) with the profile it goes to."""

    routing: Routing
    seq: int  # identity-change sequence number at routing time
    event: ParsedEvent | None = None
    erase: EraseRequest | None = None
    tick: Tick | None = None
    exposure: ParsedExposure | None = None


@dataclass(slots=True)
class StoreWrite:
    """Everything one batch of the profile step changes, written in one WriteBatch."""

    profiles: dict[str, bytes | None] = field(default_factory=dict)  # None = delete
    aliases: dict[str, str | None] = field(default_factory=dict)  # alias -> profile id
    members: dict[str, bytes | None] = field(default_factory=dict)  # profile id -> aliases
    items: dict[str, bytes] = field(default_factory=dict)  # item id -> item statistics
    erasures: list[dict] = field(default_factory=list)  # erase records to publish
    raw: dict[bytes, bytes | None] = field(default_factory=dict)  # segments, timers, outbox, meta
    triggers: list = field(default_factory=list)  # operators.triggers.Trigger, for metrics
    dead_letters: list[DeadLetter] = field(default_factory=list)  # events too late to apply
    identity_seqs: set[int] = field(default_factory=set)  # identity changes this write persists
    write_seq: int = 0  # this write's number (unpins the profile cache once written)
    oldest_ingest_ms: int = 0
    newest_event_ms: int = 0
