"""Naming a user in a request: validation and the store lookups every servicer shares.

A request names a user by a plain user id (``"u42"``, looked up as ``"user:u42"``) or by
a typed alias (``"anon:a-9"``, ``"email:<hash>"``, …); see ``state.export.resolve``.

>>> typed_alias("u42"), typed_alias("anon:a-9")
('user:u42', 'anon:a-9')
>>> check_user_id("device:" + "d" * 128)  # the limit is on the id, not the "kind:" prefix
>>> check_user_id("")
Traceback (most recent call last):
serving.errors.InvalidArgument: user_id is required
>>> check_optional_user_id("")  # an anonymous visitor
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from operators.identity import is_alias
from operators.profile import Profile
from serving.errors import InvalidArgument, StoreUnavailable
from state.export import resolve
from state.store import ProfileReader, StoreNotReady

MAX_USER_ID_CHARS = 128
MAX_REQUEST_ID_CHARS = 128
T = TypeVar("T")


def typed_alias(user: str) -> str:
    """The alias a request's ``user_id`` stands for (the rule of ``state.export.resolve``)."""
    return user if is_alias(user) else "user:" + user


def check_user_id(user_id: str, field: str = "user_id") -> None:
    """Raise ``InvalidArgument`` for an empty, blank or over-long user id or alias."""
    if not user_id or user_id.isspace():
        raise InvalidArgument(f"{field} is required")
    if is_alias(user_id):
        kind, ident = user_id.split(":", 1)
        if len(ident) > MAX_USER_ID_CHARS:
            raise InvalidArgument(f"{field}: the id of the {kind!r} alias is {len(ident)} characters long; "
                                  f"the limit is {MAX_USER_ID_CHARS}")
    elif len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidArgument(f"{field} is {len(user_id)} characters long; the limit is {MAX_USER_ID_CHARS}")


def check_optional_user_id(user_id: str, field: str = "user_id") -> None:
    """Like ``check_user_id``, but empty is allowed: it means an anonymous visitor."""
    if user_id == "":
        return
    if user_id.isspace():
        raise InvalidArgument(f"{field} is only whitespace; leave it empty for an anonymous visitor")
    check_user_id(user_id, field)


def find_profile(reader: ProfileReader, user: str) -> tuple[str, Profile] | None:
    """(profile id, profile) for a user id or typed alias; None if the store has neither."""
    # Alias and profile are separate reads: a catch-up in between may land a merge
    # (the profile moved to another id), so resolve again once.
    for _attempt in range(2):
        profile_id = resolve(reader, user)
        if profile_id is None:
            return None
        profile = reader.get(profile_id)
        if profile is not None:
            return profile_id, profile
    return None


def check_request_id(request_id: str, field: str = "request_id") -> None:
    """Raise ``InvalidArgument`` unless ``request_id`` is 1..128 printable characters, not all blank."""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"{field} is {len(request_id)} characters long; the limit is {MAX_REQUEST_ID_CHARS}")
    if not request_id or not request_id.isprintable() or request_id.isspace():
        raise InvalidArgument(f"{field} must be printable characters, not empty or only whitespace")


def read_store(read: Callable[[], T]) -> T:
    """``read()``, with a store that does not exist yet reported as UNAVAILABLE."""
    try:
        return read()
    except StoreNotReady as exc:
        raise StoreUnavailable(
            "the profile store is not ready yet (the processor has not created it); retry later"
        ) from exc
