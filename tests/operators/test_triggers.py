"""Trigger ids: deterministic, and the same from one Pulse version to the next."""

from __future__ import annotations

import hashlib

from operators.triggers import ENTERED, EXITED, Trigger


def test_a_trigger_id_is_the_blake2b_of_its_parts_each_ended_by_a_nul_byte():
    # Consumers dedupe on trigger_id across restarts and upgrades: the id of a given
    # change must never change. Pinned (what Pulse wrote before this test), and the recipe.
    t = Trigger.make("user:ü1", "cart_abandoner", "0123456789ab", ENTERED, 1_795_773_600_000, "e1", {"x": 1})
    assert t.trigger_id == "6c12254f7529d5af3e684f7cb430c517"
    parts = ("user:ü1", "cart_abandoner", "0123456789ab", "entered", "1795773600000", "e1")
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8") + b"\x00")
    assert t.trigger_id == h.hexdigest()


def test_each_part_changes_the_id():
    base = ("user:u1", "s", "v1", ENTERED, 5, "e1")
    ids = {Trigger.make(*base, {}).trigger_id}
    for i, other in enumerate(("user:u2", "t", "v2", EXITED, 6, "time")):
        changed = list(base)
        changed[i] = other
        ids.add(Trigger.make(*changed, {}).trigger_id)
    assert len(ids) == 7
    # the NUL separators keep the parts apart: "ab" + "c" is not "a" + "bc"
    assert Trigger.make("ab", "c", "v", ENTERED, 1, "e", {}).trigger_id != \
        Trigger.make("a", "bc", "v", ENTERED, 1, "e", {}).trigger_id
