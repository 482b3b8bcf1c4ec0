"""GetProfile over stitched identities: any alias finds the merged profile; aliases and
consent are in the answer."""

from __future__ import annotations

import grpc
import pytest

from operators.events import CONSENT_PURPOSES
from proto.pulse.v1 import pulse_pb2
from serving import PulseServicer, UnknownProfile
from state.codec import encode_profile
from state.store import MemoryStore, encode_members
from tests.serving.conftest import make_profile, put_profile

EMAIL = "email:" + "ab" * 16  # emails are known only as keyed hashes
ALIASES = ("anon:a-9", "device:d-1", EMAIL)
OPT_OUT = pulse_pb2.CONSENT_REGIME_OPT_OUT
OPT_IN = pulse_pb2.CONSENT_REGIME_OPT_IN


def not_found(srv, user_id: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        srv.get(user_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    return info.value.details()


@pytest.fixture
def stitched(writer, store_dir, make_reader, start_server):
    """u42 stitched with an anonymous id, a device and an email, in a real RocksDB."""
    put_profile(writer, make_profile("user:u42", version=5), *ALIASES)
    return start_server(make_reader(store_dir))


@pytest.mark.parametrize("user_id", ["u42", "user:u42", "anon:a-9", "device:d-1", EMAIL])
def test_every_alias_finds_the_merged_profile(stitched, user_id):
    p = stitched.get(user_id).profile
    assert p.profile_id == "user:u42"
    assert p.version == 5
    assert list(p.aliases) == sorted(["user:u42", *ALIASES])


def test_a_profile_known_only_through_an_anonymous_alias(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("anon:a-7"), "device:d-7")
    srv = start_server(make_reader(store_dir))
    for user_id in ("anon:a-7", "device:d-7"):
        p = srv.get(user_id).profile
        assert (p.profile_id, list(p.aliases)) == ("anon:a-7", ["anon:a-7", "device:d-7"])
    # A plain id is a *user* id: "a-7" means "user:a-7", which nobody has.
    assert not_found(srv, "a-7") == "no profile for user_id 'a-7'"


def test_unknown_alias_and_raw_email_are_not_found(stitched):
    not_found(stitched, "anon:nobody")
    not_found(stitched, "email:alice@example.com")  # raw emails are never stored
    not_found(stitched, "a-9")  # "user:a-9"


def test_an_alias_whose_profile_is_gone_is_not_found():
    store = MemoryStore()
    store.apply(profiles={}, aliases={"anon:x": "user:gone"}, members={"user:gone": encode_members(["anon:x"])})
    with pytest.raises(UnknownProfile):
        PulseServicer(store).GetProfile(pulse_pb2.GetProfileRequest(user_id="anon:x"), None)


def test_a_profile_without_a_member_list_reports_its_own_id(start_server):
    store = MemoryStore()
    store.apply(profiles={"user:u1": encode_profile(make_profile("user:u1"))}, aliases={"user:u1": "user:u1"})
    p = start_server(store).get("u1").profile
    assert list(p.aliases) == ["user:u1"]


def test_the_limit_is_on_the_id_not_the_alias_kind(start_server):
    srv = start_server(MemoryStore())
    not_found(srv, "device:" + "d" * 128)  # valid, unknown
    with pytest.raises(grpc.RpcError) as info:
        srv.get("device:" + "d" * 129)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "user_id: the id of the 'device' alias is 129 characters long; the limit is 128"


# --- consent -------------------------------------------------------------------------

def test_every_consent_purpose_has_a_field():
    fields = pulse_pb2.Consent.DESCRIPTOR.fields_by_name
    assert [p for p in CONSENT_PURPOSES if p not in fields] == []
    for purpose in CONSENT_PURPOSES:
        assert fields[purpose].message_type is pulse_pb2.ConsentDecision.DESCRIPTOR


def decisions(consent: pulse_pb2.Consent) -> dict[str, tuple]:
    out = {}
    for purpose in CONSENT_PURPOSES:
        d = getattr(consent, purpose)
        out[purpose] = (d.granted, d.explicit, d.decided_at.ToMilliseconds() if d.HasField("decided_at") else None)
    return out


EXPLICIT = {"marketing": [False, 1_796_205_000_000], "personalization": [True, 1_796_205_100_000]}


@pytest.mark.parametrize("default_consent, regime, unset", [(True, OPT_OUT, True), (False, OPT_IN, False)])
def test_consent_reports_explicit_decisions_and_the_default_regime(
        writer, store_dir, make_reader, start_server, default_consent, regime, unset):
    put_profile(writer, make_profile("user:u1", consent=EXPLICIT))
    p = start_server(make_reader(store_dir), default_consent=default_consent).get("u1").profile
    assert p.consent.default_regime == regime
    assert decisions(p.consent) == {
        "analytics": (unset, False, None),  # never decided: the regime's default
        "personalization": (True, True, 1_796_205_100_000),
        "marketing": (False, True, 1_796_205_000_000),
    }
    assert p.personalization_allowed is True


@pytest.mark.parametrize("default_consent, allowed", [(True, True), (False, False)])
def test_personalization_follows_the_regime_when_never_decided(
        writer, store_dir, make_reader, start_server, default_consent, allowed):
    put_profile(writer, make_profile("user:u1"))
    p = start_server(make_reader(store_dir), default_consent=default_consent).get("u1").profile
    assert p.personalization_allowed is allowed
    assert (p.consent.personalization.granted, p.consent.personalization.explicit) == (allowed, False)


def test_withdrawn_personalization_is_not_allowed_even_when_opt_out(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u1", consent={"personalization": [False, 1_796_205_000_000]}))
    p = start_server(make_reader(store_dir), default_consent=True).get("u1").profile
    assert p.personalization_allowed is False
