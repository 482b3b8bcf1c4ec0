"""A small PNG line chart, in pure Python (zlib + struct): enough for `pulse experiments
report` to draw an uplift with its confidence band over time, without a plotting library.

>>> chart = LineChart(200, 120, "UPLIFT")
>>> chart.band([0, 1, 2], [-1, -0.5, 0], [1, 0.5, 0.4], (200, 220, 255))
>>> chart.line([0, 1, 2], [0, 0.1, 0.2], (0, 0, 200))
>>> png = chart.png()
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", len(png) > 200
(True, True)
"""

from __future__ import annotations

import struct
import zlib

# 3x5 glyphs, rows top to bottom ("#" = ink).
_FONT = {
    "0": ["###", "#.#", "#.#", "#.#", "###"], "1": [".#.", "##.", ".#.", ".#.", "###"],
    "2": ["###", "..#", "###", "#..", "###"], "3": ["###", "..#", ".##", "..#", "###"],
    "4": ["#.#", "#.#", "###", "..#", "..#"], "5": ["###", "#..", "###", "..#", "###"],
    "6": ["###", "#..", "###", "#.#", "###"], "7": ["###", "..#", ".#.", ".#.", ".#."],
    "8": ["###", "#.#", "###", "#.#", "###"], "9": ["###", "#.#", "###", "..#", "###"],
    "A": [".#.", "#.#", "###", "#.#", "#.#"], "B": ["##.", "#.#", "##.", "#.#", "##."],
    "C": [".##", "#..", "#..", "#..", ".##"], "D": ["##.", "#.#", "#.#", "#.#", "##."],
    "E": ["###", "#..", "##.", "#..", "###"], "F": ["###", "#..", "##.", "#..", "#.."],
    "G": [".##", "#..", "#.#", "#.#", ".##"], "H": ["#.#", "#.#", "###", "#.#", "#.#"],
    "I": ["###", ".#.", ".#.", ".#.", "###"], "J": ["..#", "..#", "..#", "#.#", ".#."],
    "K": ["#.#", "#.#", "##.", "#.#", "#.#"], "L": ["#..", "#..", "#..", "#..", "###"],
    "M": ["#.#", "###", "###", "#.#", "#.#"], "N": ["##.", "#.#", "#.#", "#.#", "#.#"],
    "O": [".#.", "#.#", "#.#", "#.#", ".#."], "P": ["##.", "#.#", "##.", "#..", "#.."],
    "Q": [".#.", "#.#", "#.#", "##.", ".##"], "R": ["##.", "#.#", "##.", "#.#", "#.#"],
    "S": [".##", "#..", ".#.", "..#", "##."], "T": ["###", ".#.", ".#.", ".#.", ".#."],
    "U": ["#.#", "#.#", "#.#", "#.#", "###"], "V": ["#.#", "#.#", "#.#", "#.#", ".#."],
    "W": ["#.#", "#.#", "###", "###", "#.#"], "X": ["#.#", "#.#", ".#.", "#.#", "#.#"],
    "Y": ["#.#", "#.#", ".#.", ".#.", ".#."], "Z": ["###", "..#", ".#.", "#..", "###"],
    " ": ["...", "...", "...", "...", "..."], ".": ["...", "...", "...", "...", ".#."],
    "-": ["...", "...", "###", "...", "..."], "+": ["...", ".#.", "###", ".#.", "..."],
    "%": ["#.#", "..#", ".#.", "#..", "#.#"], ":": ["...", ".#.", "...", ".#.", "..."],
    "/": ["..#", "..#", ".#.", "#..", "#.."], "_": ["...", "...", "...", "...", "###"],
    "(": [".#.", "#..", "#..", "#..", ".#."], ")": [".#.", "..#", "..#", "..#", ".#."],
    "=": ["...", "###", "...", "###", "..."],
}
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (170, 170, 170)


class LineChart:
    """Series over a shared x axis, autoscaled, with a zero line, ticks and labels."""

    def __init__(self, width: int, height: int, title: str = "", x_label: str = "", y_label: str = "") -> None:
        self.w, self.h = width, height
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self._series: list[tuple[str, list, list, list | None, tuple]] = []

    def line(self, xs, ys, color) -> None:
        self._series.append(("line", list(xs), list(ys), None, color))

    def band(self, xs, lows, highs, color) -> None:
        self._series.append(("band", list(xs), list(lows), list(highs), color))

    def png(self) -> bytes:
        px = [[WHITE] * self.w for _ in range(self.h)]
        left, right, top, bottom = 60, 15, 25, 35
        xs = [x for s in self._series for x in s[1]]
        ys = [y for s in self._series for y in s[2] + (s[3] or []) if y is not None] + [0.0]
        x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y1 = y0 + 1
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
        pw, ph = self.w - left - right, self.h - top - bottom

        def sx(x):
            return left + round((x - x0) / (x1 - x0) * (pw - 1))

        def sy(y):
            return top + round((y1 - y) / (y1 - y0) * (ph - 1))

        for kind, sxs, a, b, color in self._series:
            if kind == "band":
                for i in range(len(sxs) - 1):
                    for X in range(sx(sxs[i]), sx(sxs[i + 1]) + 1):
                        t = (X - sx(sxs[i])) / max(1, sx(sxs[i + 1]) - sx(sxs[i]))
                        lo = a[i] + (a[i + 1] - a[i]) * t
                        hi = b[i] + (b[i + 1] - b[i]) * t
                        for Y in range(max(top, sy(hi)), min(top + ph, sy(lo) + 1)):
                            px[Y][X] = color
        self._hline(px, sy(0.0), left, left + pw, GREY)
        for kind, sxs, a, _b, color in self._series:
            if kind == "line":
                pts = [(sx(x), sy(y)) for x, y in zip(sxs, a) if y is not None]
                for (ax, ay), (bx, by) in zip(pts, pts[1:]):
                    self._segment(px, ax, ay, bx, by, color)
        self._hline(px, top + ph, left, left + pw, BLACK)
        for Y in range(top, top + ph + 1):
            px[Y][left] = BLACK
        for i in range(5):
            v = y0 + (y1 - y0) * i / 4
            Y = sy(v)
            self._hline(px, Y, left - 4, left, BLACK)
            self._text(px, f"{v:.3g}", 4, Y - 5)
        for i in range(5):
            v = x0 + (x1 - x0) * i / 4
            X = sx(v)
            for Y in range(top + ph, top + ph + 4):
                px[Y][X] = BLACK
            self._text(px, f"{v:.0f}", X - 6, top + ph + 7)
        self._text(px, self.title, left, 6)
        self._text(px, self.x_label, left + pw // 2 - 3 * len(self.x_label), self.h - 12)
        return _encode(px, self.w, self.h)

    def _hline(self, px, Y, xa, xb, color) -> None:
        if 0 <= Y < self.h:
            for X in range(max(0, xa), min(self.w, xb + 1)):
                px[Y][X] = color

    def _segment(self, px, x0, y0, x1, y1, color) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx_, sy_ = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            for ox in (0, 1):  # two pixels thick
                if 0 <= y0 < self.h and 0 <= x0 + ox < self.w:
                    px[y0][x0 + ox] = color
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx_
            if e2 <= dx:
                err += dx
                y0 += sy_

    def _text(self, px, text: str, x: int, y: int, scale: int = 2) -> None:
        for ch in text.upper():
            glyph = _FONT.get(ch, _FONT[" "])
            for r, row in enumerate(glyph):
                for c, cell in enumerate(row):
                    if cell == "#":
                        for dy in range(scale):
                            for dx in range(scale):
                                Y, X = y + r * scale + dy, x + c * scale + dx
                                if 0 <= Y < self.h and 0 <= X < self.w:
                                    px[Y][X] = BLACK
            x += 4 * scale


def _encode(px, w: int, h: int) -> bytes:
    raw = b"".join(b"\x00" + bytes(v for p in row for v in p) for row in px)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
