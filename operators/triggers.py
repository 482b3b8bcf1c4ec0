"""Segment membership over event time, and the triggers its changes emit.

``SegmentEngine`` keeps a profile's memberships true at the profile's *segment clock*:

- ``on_event`` after an event was applied: the clock moves to ``max(clock, event time)``
  and every segment is evaluated there (cause: the event id).
- ``advance(profile, until)`` before that, and from timers: the instants ``X < until`` at
  which time alone may change a membership (``SegmentSet.next_change``: a bucket leaving
  its window, a ``since()`` threshold being crossed) are visited in order; the clock
  moves to each and memberships change *at* ``X`` (cause: ``time``).

``until`` is the watermark of the record's source partition (the highest event time read
from it so far), so whether an instant was passed depends only on the partition's order:
replaying a topic gives the same transitions as live processing did. A late event (older
than the clock) is applied and evaluated at the clock; transitions are never retracted.

Marketing segments (``Segment.marketing``) need the profile's ``personalization`` consent.
Each membership change is a ``Trigger`` with a deterministic ``trigger_id`` (the same
change recomputed after a crash has the same id, so consumers can dedupe).

>>> Trigger.make("user:u1", "cart_abandoner", "0123456789ab", ENTERED, 1_000, "e1", {}).trigger_id
'...'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from operators.profile import DEFAULT_POLICY, Policy, Profile
from operators.segments import SegmentSet

ENTERED = "entered"
EXITED = "exited"
CAUSE_TIME = "time"
CAUSE_BACKFILL = "backfill"
CAUSE_MERGED = "merged"  # the profile was absorbed into another by identity stitching
CAUSE_ERASED = "erased"  # the profile was erased (GDPR)
TRIGGER_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Trigger:
    trigger_id: str
    profile_id: str
    segment_id: str
    segment_version: str
    transition: str  # ENTERED | EXITED
    at_ms: int  # event time of the change
    cause: str  # an event id, or CAUSE_TIME / CAUSE_BACKFILL / CAUSE_MERGED / CAUSE_ERASED
    values: dict[str, Any] = field(default_factory=dict)  # the feature values that decided it
    backfill: bool = False

    @classmethod
    def make(cls, profile_id: str, segment_id: str, version: str, transition: str, at_ms: int, cause: str,
             values: dict[str, Any], backfill: bool = False) -> Trigger:
        # The parts, each followed by a NUL byte, hashed in one call.
        key = "\x00".join((profile_id, segment_id, version, transition, str(at_ms), cause, ""))
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()
        return cls(digest, profile_id, segment_id, version, transition, at_ms, cause, values, backfill)

    def to_record(self) -> dict[str, Any]:
        return {
            "v": TRIGGER_SCHEMA,
            "trigger_id": self.trigger_id,
            "profile_id": self.profile_id,
            "segment_id": self.segment_id,
            "segment_version": self.segment_version,
            "transition": self.transition,
            "at_ms": self.at_ms,
            "cause": self.cause,
            "backfill": self.backfill,
            "values": self.values,
        }


class SegmentEngine:
    """Evaluates a ``SegmentSet`` on profiles (pure: no I/O; callers store the results)."""

    def __init__(self, segments: SegmentSet, policy: Policy = DEFAULT_POLICY) -> None:
        self.segments = segments
        self.policy = policy
        self.active = bool(segments.segments)

    def advance(self, profile: Profile, until_ms: int) -> list[Trigger]:
        """Visit the instants before ``until_ms`` at which time alone changes memberships."""
        out: list[Trigger] = []
        while profile.next_check_ms is not None and profile.next_check_ms < until_ms:
            at = profile.next_check_ms
            changed = None  # the clock is past the instant (a late record's catch-up): all
            if at >= profile.clock_ms:
                # Only what time changes at this instant (SegmentSet.time_inputs): nothing
                # the segments read changed between the last evaluation and it.
                profile.clock_ms = at
                changed = self.segments.time_inputs(profile.counters, at)
            out.extend(self._evaluate(profile, profile.clock_ms, CAUSE_TIME, changed=changed))
        return out

    def catch_up(self, profile: Profile, watermark_ms: int) -> None:
        """Before a record at ``watermark_ms`` is applied: move the profile's clock to the
        latest instant before it at which time changed a value the segments read (a
        bucket leaving a window, a since() offset), even where no membership changed.
        ``advance`` visits only the instants where one may (``SegmentSet.next_change``);
        an accepted late event is evaluated at this clock, as if every such instant had
        been visited. Only a late record (event time before the watermark) needs it."""
        passed = self.segments.last_change_before(profile.counters, watermark_ms)
        if passed is not None and passed > profile.clock_ms:
            profile.clock_ms = passed

    def on_event(self, profile: Profile, event_id: str, ts_ms: int, event_type: str | None = None,
                 full: bool = False) -> list[Trigger]:
        """After an event was applied: only the segments reading something it changed
        (``SegmentSet.changed_inputs``) are evaluated, unless ``full``
        (the profile absorbed another), the event changed consent, or a time change is due
        at this very instant. It is evaluated at the profile's clock if that is later
        (an accepted late event; see ``catch_up``)."""
        if ts_ms > profile.clock_ms:
            profile.clock_ms = ts_ms
        now = profile.clock_ms
        if full or event_type is None or event_type == "consent_update" or (
                profile.next_check_ms is not None and profile.next_check_ms <= now):
            return self._evaluate(profile, now, event_id)
        changed = self.segments.changed_inputs(profile.changed, profile.counters, now)
        return self._evaluate(profile, now, event_id, changed=changed)

    def backfill(self, profile: Profile) -> list[Trigger]:
        """Re-evaluate at the profile's clock after definitions changed: members of an added
        or changed segment enter (flagged ``backfill``), members of a removed one are
        dropped without a trigger. Unchanged segments give the same answer at the same
        clock, so they emit nothing."""
        known = self.segments.by_id
        for seg_id in [s for s in profile.segments if s not in known]:
            del profile.segments[seg_id]
        return self._evaluate(profile, profile.clock_ms, CAUSE_BACKFILL, backfill=True)

    def leave_all(self, profile: Profile, cause: str, at_ms: int) -> list[Trigger]:
        """Exit every segment (the profile was merged away or erased)."""
        out = []
        for seg_id, (_entered, version) in sorted(profile.segments.items()):
            out.append(Trigger.make(profile.profile_id, seg_id, version, EXITED, at_ms, cause, {}))
        profile.segments = {}
        profile.next_check_ms = None
        return out

    def _evaluate(self, profile: Profile, now: int, cause: str, backfill: bool = False,
                  changed: list[str] | None = None) -> list[Trigger]:
        segset = self.segments
        if not self.active:
            profile.next_check_ms = None
            return []
        memo: dict[str, Any] = {}  # what evaluate read, reused for the triggers' values
        if changed is None:
            result = segset.evaluate(profile, now, memo)
        else:
            result = segset.evaluate_changed(changed, profile, now, memo)
        personal = profile.allows("personalization", self.policy)
        current = profile.segments
        out: list[Trigger] = []
        by_id = segset.by_id
        for seg_id, got in result.items():  # in dependency order; the others keep their membership
            seg = by_id[seg_id]
            member = got and (personal or not seg.marketing)
            held = current.get(seg_id)
            if member:
                # A membership under an older version of the definition re-enters under this one.
                if held is None or held[1] != seg.version:
                    current[seg_id] = [now, seg.version]
                    out.append(Trigger.make(profile.profile_id, seg_id, seg.version, ENTERED, now, cause,
                                            segset.values(seg_id, profile, now, memo), backfill))
            elif held is not None:
                del current[seg_id]
                out.append(Trigger.make(profile.profile_id, seg_id, held[1], EXITED, now, cause,
                                        segset.values(seg_id, profile, now, memo), backfill))
        profile.next_check_ms = segset.next_change(profile, now)
        return out
