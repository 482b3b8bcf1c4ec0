"""`pulse segments check` and `pulse segments explain`."""

from __future__ import annotations

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord, Tick
from operators.segments import load_segments
from pulse.cli import main
from state.store import RocksStore

T0 = 1_795_800_000_000
SEGMENTS = """segments:
  - id: cart_abandoner
    description: added to cart, not bought
    condition: count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0
"""


def test_check_lists_the_segments_of_a_good_file(capsys):
    assert main(["segments", "check", "deploy/segments.yaml"]) == 0
    out = capsys.readouterr().out
    assert "deploy/segments.yaml: 20 segments OK" in out
    assert "vip" in out and "(uses big_spender_90d)" in out


def test_check_reports_file_line_column_and_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  - id: a\n    condition: count(add_to_cart) >= 1\n")
    assert main(["segments", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:16: segment 'a': unbounded window: count() needs a window" in err


def test_explain_shows_each_term_and_the_stored_membership(tmp_path, monkeypatch, capsys):
    seg_file = tmp_path / "segments.yaml"
    seg_file.write_text(SEGMENTS)
    state = tmp_path / "state"
    store = RocksStore(state / "store")
    doc = {"event_id": "e1", "type": "add_to_cart", "user_id": "alice", "timestamp": T0, "item_id": "tent",
           "price": 120}
    run_main(build_flow(TestingSource([RawRecord(orjson.dumps(doc), b"alice", "events/0", 0, T0),
                                       Tick("events/0", None, final=True)]),
                        TestingSink([]), store, segments=load_segments(seg_file)))
    store.close()
    monkeypatch.setenv("PULSE_STATE_DIR", str(state))
    monkeypatch.setenv("PULSE_SEGMENTS_PATH", str(seg_file))
    assert main(["segments", "explain", "cart_abandoner", "alice"]) == 0
    out = capsys.readouterr().out
    assert "count(add_to_cart, 10m)" in out and "= 1" in out
    assert "result" in out and "True" in out
    assert f"stored membership: member since {T0}" in out
    # Later, the window has passed: the same profile, evaluated at another time.
    assert main(["segments", "explain", "cart_abandoner", "alice", "--at", str(T0 + 600_000)]) == 0
    assert "False" in capsys.readouterr().out
    assert main(["segments", "explain", "nope", "alice"]) == 2
    assert main(["segments", "explain", "cart_abandoner", "bob"]) == 2
