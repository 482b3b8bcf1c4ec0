"""The current cart of a profile, read from its cart log and kept up to date line by line.

A profile's ``cart_log`` holds, per item, the quantity operations since its last purchase
(``operators.profile``); the cart is the lines whose quantity is positive, in log order.
Segment conditions read it on every event that changes it (``cart_value``,
``cart_items``), and a busy profile's log holds up to ``MAX_CART_LINES`` lines: building
the view again from every line after each change cost ~20 µs per read at a hundred
lines (the segments benchmark's flow spent 2 µs of every event there). ``CartView``
instead keeps the view, each line's entry and the totals, and after a change updates
only the lines that changed.

The totals are integers (quantity; value in millionths, each line's ``qty * price``
rounded to a millionth), so they are the same whether summed at once or kept up to date
change by change, in any order.

>>> log = {"a": {"ops": [[1, 2]], "price": 2.5, "category": None}}
>>> cv = CartView()
>>> cv.view(log)["a"]["qty"], cv.totals(log)
(2, (2, 5000000))
>>> log["a"]["ops"].append([2, -2]); cv.changed("a", new=False)
>>> cv.view(log), cv.totals(log)
({}, (0, 0))
"""

from __future__ import annotations

from typing import Any

from operators.buckets import micros

_NO_ENTRY = object()  # a line whose entry was not computed yet (None: not in the cart)


def cart_entry(line: dict[str, Any]) -> dict[str, Any] | None:
    """A cart log line as a cart view entry, or None when its quantity is not positive."""
    ops = line["ops"]
    qty = sum(delta for _ts, delta in ops)
    if qty <= 0:
        return None
    added = min(ts for ts, delta in ops if delta > 0)
    return {"qty": qty, "price": line["price"], "category": line["category"], "added_ms": added}


def _value(entry: dict[str, Any]) -> int:
    return micros(entry["qty"] * (entry["price"] or 0.0))


class CartView:
    """The view of one cart log: ``view(log)`` is the cart (item -> entry; read-only: the
    same dict until the log changes), ``totals(log)`` its quantity and value in
    millionths. Every change of a line of the log is reported with ``changed`` (``new``:
    the line was added at the end of the log) or ``dropped`` (the line left the log)."""

    __slots__ = ("_view", "_entries", "_qty", "_value", "_dirty")

    def __init__(self) -> None:
        self._view: dict[str, dict[str, Any]] | None = None
        self._entries: dict[str, dict[str, Any] | None] = {}
        self._qty = self._value = 0
        self._dirty: dict[str, bool] = {}  # item -> added at the end of the log since the view

    def changed(self, item_id: str, new: bool) -> None:
        self._entries.pop(item_id, None)
        if self._view is None:
            return
        dirty = self._dirty
        if new:  # the new lines in the order the log has them (a line dropped and added again moves)
            dirty.pop(item_id, None)
            dirty[item_id] = True
        elif item_id not in dirty:
            dirty[item_id] = False

    def dropped(self, item_id: str) -> None:
        self.changed(item_id, False)

    def view(self, log: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        view = self._view
        if view is None or (self._dirty and not self._update(log)):
            return self._rebuild(log)
        return self._view  # type: ignore[return-value]

    def totals(self, log: dict[str, dict[str, Any]]) -> tuple[int, int]:
        self.view(log)
        return self._qty, self._value

    def _rebuild(self, log: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        entries = self._entries
        view: dict[str, dict[str, Any]] = {}
        qty = value = 0
        for item_id, line in log.items():
            entry = entries.get(item_id, _NO_ENTRY)
            if entry is _NO_ENTRY:
                entry = entries[item_id] = cart_entry(line)
            if entry is not None:
                view[item_id] = entry
                qty += entry["qty"]
                value += _value(entry)
        self._view, self._qty, self._value = view, qty, value
        self._dirty = {}
        return view

    def _update(self, log: dict[str, dict[str, Any]]) -> bool:
        """The changed lines into a copy of the view; False (the view left as it was) where
        a line came back into the cart in the middle of the log: only a rebuild keeps log
        order there."""
        view = dict(self._view)  # type: ignore[arg-type]
        entries = self._entries
        qty, value = self._qty, self._value
        for item_id, new in self._dirty.items():
            line = log.get(item_id)
            entry = None if line is None else cart_entry(line)
            old = view.get(item_id)
            if old is None and entry is not None and not new:
                return False
            if line is not None:
                entries[item_id] = entry
            if old is not None:
                qty -= old["qty"]
                value -= _value(old)
                if entry is None or new:  # a new line is at the end of the log
                    del view[item_id]
            if entry is not None:
                view[item_id] = entry  # in place if it was there, else at the end
                qty += entry["qty"]
                value += _value(entry)
        self._view, self._qty, self._value = view, qty, value
        self._dirty = {}
        return True
