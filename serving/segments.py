"""GetSegments and ListSegmentMembers: segment memberships as the processor stored them.

A profile record holds its memberships (``Profile.segments``: id -> [entered at, version]);
the store also keeps one key per membership (``s<segment>\\x00<profile>``), which is what
pages of ListSegmentMembers walk. Page tokens are the last profile id of the page,
url-safe base64 encoded, so a page starts strictly after it.

>>> decode_page_token(encode_page_token("user:u42"))
'user:u42'
>>> decode_page_token("%%")
Traceback (most recent call last):
serving.errors.InvalidArgument: page_token is not one this server issued
"""

from __future__ import annotations

import base64
import binascii
import re

from proto.pulse.v1 import pulse_pb2
from serving.errors import InvalidArgument
from serving.profiles import _set_timestamp
from state.store import ProfileReader, members_prefix

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_SEGMENT_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")


def encode_page_token(profile_id: str) -> str:
    return base64.urlsafe_b64encode(profile_id.encode("utf-8")).decode("ascii")


def decode_page_token(token: str) -> str:
    try:
        pid = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        pid = ""
    if not pid:
        raise InvalidArgument("page_token is not one this server issued")
    return pid


def check_segment_id(segment_id: str) -> None:
    if not segment_id:
        raise InvalidArgument("segment_id is required")
    if not _SEGMENT_ID.fullmatch(segment_id):
        raise InvalidArgument(f"segment_id {segment_id[:80]!r} is not a segment id ([a-z][a-z0-9_]*, at most 64 chars)")


def write_segments(target: pulse_pb2.GetSegmentsResponse, profile_id: str, segments: dict) -> pulse_pb2.GetSegmentsResponse:
    target.profile_id = profile_id
    add = target.segments.add
    for seg_id, (entered_ms, version) in sorted(segments.items()):
        m = add(segment_id=seg_id, segment_version=version)
        _set_timestamp(m.entered_at, entered_ms)
    return target


def list_members(reader: ProfileReader, request: pulse_pb2.ListSegmentMembersRequest) -> pulse_pb2.ListSegmentMembersResponse:
    check_segment_id(request.segment_id)
    size = request.page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be in 0..{MAX_PAGE_SIZE}, got {request.page_size}")
    prefix = members_prefix(request.segment_id)
    start = prefix
    if request.page_token:
        start = prefix + decode_page_token(request.page_token).encode("utf-8") + b"\x00"  # strictly after
    response = pulse_pb2.ListSegmentMembersResponse()
    add = response.members.add
    last = None
    for key, value in reader.scan(prefix, start=start, limit=size + 1):
        pid = key[len(prefix):].decode("utf-8")
        if len(response.members) == size:
            response.next_page_token = encode_page_token(last)
            break
        member = add(profile_id=pid)
        _set_timestamp(member.entered_at, int.from_bytes(value, "big"))
        last = pid
    return response
