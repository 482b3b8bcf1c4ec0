"""One contract for every store implementation, plus the RocksDB-specific promises."""

from __future__ import annotations

import pytest

from operators.profile import Profile
from state.codec import StateCodecError, encode_profile
from state.store import MemoryStore, RocksReader, RocksStore, StoreError, StoreNotReady, StoreOptions


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "store")
    yield s
    s.close()


def test_absent_profile_is_none(store):
    assert store.get("nobody") is None


def test_write_then_read_round_trips(store):
    a = Profile("a", counts={"page_view": 3},
                cart_log={"x": {"ops": [[1, 1]], "since": 0, "price": 2.0, "price_ms": 1, "category": None}})
    store.write([a, Profile("b")])
    assert store.get("a") == a
    assert store.get("b") == Profile("b")


def test_later_write_replaces(store):
    store.write([Profile("a", orders=1)])
    store.apply({"a": encode_profile(Profile("a", orders=2))})
    assert store.get("a").orders == 2


def test_unicode_ids(store):
    store.write([Profile("ünïcødé-✓")])
    assert store.get("ünïcødé-✓").profile_id == "ünïcødé-✓"


def test_undecodable_record_raises_codec_error(store):
    store.apply({"bad": b"{not json"})
    with pytest.raises(StateCodecError, match="undecodable profile record"):
        store.get("bad")


def test_rocksdb_survives_reopen(tmp_path):
    s = RocksStore(tmp_path / "db")
    s.write([Profile("a", orders=4)])
    s.close()
    s = RocksStore(tmp_path / "db")
    assert s.get("a").orders == 4
    assert s.count() == 1
    s.close()


def test_second_writer_gets_a_clear_error(tmp_path):
    s = RocksStore(tmp_path / "db")
    with pytest.raises(StoreError, match=str(tmp_path / "db")):
        RocksStore(tmp_path / "db")
    s.close()


def test_secondary_reader_waits_for_the_writer_then_catches_up(tmp_path):
    reader = RocksReader(tmp_path / "db", tmp_path / "reader")
    assert not reader.ready
    with pytest.raises(StoreNotReady, match="pulse run"):
        reader.get("a")
    writer = RocksStore(tmp_path / "db")
    writer.write([Profile("a", orders=1)])
    reader.catch_up()
    assert reader.ready
    reader.catch_up()
    assert reader.get("a").orders == 1
    writer.write([Profile("a", orders=2)])
    assert reader.get("a").orders == 1  # not yet caught up
    reader.catch_up()
    assert reader.get("a").orders == 2
    reader.close()
    writer.close()


def test_reader_catch_up_is_skipped_when_the_writer_wrote_nothing(tmp_path):
    writer = RocksStore(tmp_path / "db")
    writer.write([Profile("a", orders=1)])
    reader = RocksReader(tmp_path / "db", tmp_path / "reader")
    assert reader.catch_up() is False  # opened after the write: nothing new
    writer.write([Profile("a", orders=2)])
    assert reader.catch_up() is True
    assert reader.get("a").orders == 2
    assert reader.catch_up() is False
    reader.close()
    writer.close()


def test_identity_records_and_deletes_in_one_batch(store):
    store.apply({"user:u": encode_profile(Profile("user:u"))}, {"user:u": "user:u", "anon:a": "user:u"},
                {"user:u": b'["anon:a","user:u"]'})
    assert store.profile_of("anon:a") == "user:u"
    assert store.members_of("user:u") == ("anon:a", "user:u")
    store.apply({"user:u": None}, {"user:u": None, "anon:a": None}, {"user:u": None})
    assert store.get("user:u") is None and store.profile_of("anon:a") is None
    assert store.members_of("user:u") is None
    assert [row for row in store.dump() if row[0] != "meta"] == []


def test_item_records_round_trip_and_iterate(store):
    from operators.items import ItemStats
    from state.codec import encode_item

    a, b = ItemStats("tent-1", category="outdoor/tents", score=2.5, ref_ms=10), ItemStats("boot-2", views=3)
    store.apply({"user:u": encode_profile(Profile("user:u"))}, {"user:u": "user:u"}, {},
                {"tent-1": encode_item(a), "boot-2": encode_item(b)})
    assert store.get_item("tent-1") == a and store.get_item("nope") is None
    assert sorted(i.item_id for i in store.iter_items()) == ["boot-2", "tent-1"]


def test_reader_waits_while_the_writer_is_still_creating_the_store(tmp_path):
    # A RocksDB directory without Pulse's column families yet (the writer mid-creation).
    from rocksdict import Options, Rdict

    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    half = Rdict(str(tmp_path / "db"), opts)
    reader = RocksReader(tmp_path / "db", tmp_path / "reader")
    assert not reader.ready
    half.close()
    del half
    writer = RocksStore(tmp_path / "db")
    writer.write([Profile("a", orders=3)])
    reader.catch_up()
    assert reader.ready and reader.get("a").orders == 3
    reader.close()
    writer.close()


def test_a_new_store_beside_recovery_snapshots_is_refused(tmp_path):
    from flows.runtime import check_state_consistent, recovery_config
    from state.store import StoreError

    recovery = tmp_path / "recovery"
    recovery_config(recovery)  # snapshots exist: a flow ran here before
    store = RocksStore(tmp_path / "store")
    try:
        with pytest.raises(StoreError) as err:
            check_state_consistent(store, recovery)
        assert str(tmp_path / "store") in str(err.value) and f"delete {recovery}" in str(err.value)
    finally:
        store.close()
    reopened = RocksStore(tmp_path / "store")  # the same store again: not new any more
    try:
        check_state_consistent(reopened, recovery)
    finally:
        reopened.close()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_recovery_snapshots_are_refused_naming_the_file(tmp_path, damage):
    from flows.runtime import check_recovery, recovery_config
    from state.store import StoreError

    recovery = tmp_path / "recovery"
    recovery_config(recovery)
    check_recovery(recovery)  # freshly initialised: fine
    [part] = recovery.glob("*.sqlite3")
    data = part.read_bytes()
    part.write_bytes({"truncated": data[:500], "empty": b"", "garbage": b"not a database" * 100}[damage])
    with pytest.raises(StoreError) as err:
        check_recovery(recovery)
    assert str(part) in str(err.value) and f"Delete the directory {recovery}" in str(err.value)


def test_a_damaged_store_is_refused_naming_the_path_and_what_to_do(tmp_path):
    from state.store import StoreError

    store = RocksStore(tmp_path / "store")
    store.close()
    (tmp_path / "store" / "CURRENT").write_bytes(b"")
    with pytest.raises(StoreError) as err:
        RocksStore(tmp_path / "store")
    assert str(tmp_path / "store") in str(err.value) and "pulse replay" in str(err.value)


def test_the_writer_opens_the_profiles_family_with_the_configured_memtable(tmp_path):
    store = RocksStore(tmp_path / "store", StoreOptions(write_buffer_mb=8))
    store.close()
    options = max((tmp_path / "store").glob("OPTIONS-*")).read_text()
    section = options.split('[CFOptions "profiles"]')[1].split("[TableOptions")[0]
    assert "write_buffer_size=8388608" in section
    default = options.split('[CFOptions "default"]')[1].split("[TableOptions")[0]
    assert "write_buffer_size=67108864" in default  # the default family keeps RocksDB's 64 MB
