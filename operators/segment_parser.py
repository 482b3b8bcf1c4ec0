"""Lexer and parser of the segment condition language (syntax only; see ``operators.segments``).

``parse`` turns a condition into a small AST. Every node knows the span ``[pos, end)`` of
its source text, so errors point at a character and ``explain`` can quote each term.
Types, names and windows are checked later, by the compiler in ``operators.segments``.

Grammar (EBNF; keywords are lower case)::

    condition  = or_expr EOF
    or_expr    = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | comparison
    comparison = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                     | ["not"] "in" "[" literal { "," literal } "]" ]
    sum        = product { ("+" | "-") product }
    product    = unary { ("*" | "/") unary }
    unary      = "-" unary | primary
    primary    = NUMBER | DURATION | STRING | "true" | "false" | "(" or_expr ")"
               | NAME [ "(" [ arg { "," arg } ] ")" ]
    arg        = NAME "=" unary | or_expr
    literal    = ["-"] NUMBER | STRING | "true" | "false" | DURATION

    NUMBER     = digits [ "." digits ]            e.g. 3, 0.7
    DURATION   = digits ("s" | "m" | "h" | "d" | "w")   e.g. 30s 10m 2h 7d 1w (in ms)
    STRING     = '...' | "..."                    (\\ escapes the next character)
    NAME       = letter_or_underscore { letter_or_digit_or_underscore }

>>> parse("count(purchase, 7d) >= 2 and not urban")
Bool(op='and', ...)
>>> tokenize("since(any) >= 14d")[-2]
Token(kind='dur', value=1209600000, pos=14, end=17)
>>> parse("count(purchase, 7 d)")
Traceback (most recent call last):
...
operators.segment_parser.ExprError: at 18: expected ',' or ')' after an argument of count(), got 'd'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

DURATION_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
KEYWORDS = frozenset(("and", "or", "not", "in", "true", "false"))
COMPARISONS = frozenset(("==", "!=", "<", "<=", ">", ">="))
MAX_CONDITION_CHARS = 4096
MAX_TOKENS = 300
MAX_DEPTH = 64
_TWO_CHAR_OPS = ("==", "!=", "<=", ">=")
_ONE_CHAR_OPS = "<>+-*/()[],="


class ExprError(ValueError):
    """A problem at character ``offset`` of a condition."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"at {offset}: {message}")
        self.offset = offset
        self.message = message


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num | dur | str | name | kw | op | eof
    value: object
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Lit:
    kind: str  # num | dur | str | bool
    value: object
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Kwarg:
    name: str
    value: "Node"
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple["Node", ...]
    kwargs: tuple[Kwarg, ...]
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Node"
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Node"
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Bool:
    op: str  # and | or
    left: "Node"
    right: "Node"
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: "Node"
    right: "Node"
    op_pos: int
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: "Node"
    right: "Node"
    op_pos: int
    pos: int
    end: int


@dataclass(frozen=True, slots=True)
class In:
    left: "Node"
    items: tuple[Lit, ...]
    negate: bool
    op_pos: int
    pos: int
    end: int


Node = Union[Lit, Name, Call, Neg, Not, Bool, Arith, Compare, In]


def _describe(tok: Token, text: str) -> str:
    return "end of condition" if tok.kind == "eof" else repr(text[tok.pos:tok.end])


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens (the last one is ``eof``)."""
    if len(text) > MAX_CONDITION_CHARS:
        raise ExprError(0, f"condition is longer than {MAX_CONDITION_CHARS} characters")
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            out.append(_number(text, i))
            i = out[-1].end
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(Token("kw" if word in KEYWORDS else "name", word, i, j))
            i = j
        elif ch in "'\"":
            out.append(_string(text, i))
            i = out[-1].end
        elif text.startswith(_TWO_CHAR_OPS, i):
            out.append(Token("op", text[i:i + 2], i, i + 2))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            out.append(Token("op", ch, i, i + 1))
            i += 1
        elif text.startswith(("&&", "||"), i):
            raise ExprError(i, f"unexpected {text[i:i + 2]!r}: write {'and' if ch == '&' else 'or'}")
        elif ch == "!":
            raise ExprError(i, "unexpected '!': write 'not' (or '!=' to compare)")
        else:
            raise ExprError(i, f"unexpected character {ch!r}")
    if len(out) > MAX_TOKENS:
        raise ExprError(out[MAX_TOKENS].pos, f"condition has more than {MAX_TOKENS} tokens: split it into segments")
    out.append(Token("eof", None, n, n))
    return out


def _number(text: str, i: int) -> Token:
    j, n = i, len(text)
    while j < n and text[j].isdigit():
        j += 1
    is_float = j + 1 < n and text[j] == "." and text[j + 1].isdigit()
    if is_float:
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    k = j
    while k < n and (text[k].isalnum() or text[k] == "_"):
        k += 1
    if k == j:
        raw = text[i:j]
        return Token("num", float(raw) if is_float else int(raw), i, j)
    unit = text[j:k]
    if unit not in DURATION_UNITS:
        raise ExprError(j, f"bad duration unit {unit!r} in {text[i:k]!r}: "
                           "use s, m, h, d or w (e.g. 30s, 10m, 2h, 7d, 1w)")
    if is_float:
        raise ExprError(i, f"durations are whole numbers with a unit: {text[i:k]!r} (use a smaller unit)")
    return Token("dur", int(text[i:j]) * DURATION_UNITS[unit], i, k)


def _string(text: str, i: int) -> Token:
    quote, j, chars = text[i], i + 1, []
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            chars.append(text[j + 1])
            j += 2
        elif ch == quote:
            return Token("str", "".join(chars), i, j + 1)
        else:
            chars.append(ch)
            j += 1
    raise ExprError(i, "unterminated string")


def parse(text: str) -> Node:
    """Parse a whole condition; raises ``ExprError`` with the offending offset."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, kind: str, value: object = None) -> bool:
        tok = self.toks[self.i]
        return tok.kind == kind and (value is None or tok.value == value)

    def fail(self, tok: Token, expected: str) -> ExprError:
        return ExprError(tok.pos, f"{expected}, got {_describe(tok, self.text)}")

    def parse(self) -> Node:
        if self.at("eof"):
            raise ExprError(0, "empty condition")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "eof":
            if tok.kind == "op" and tok.value in COMPARISONS:
                raise ExprError(tok.pos, "comparisons cannot be chained: use 'and'")
            if tok.kind == "op" and tok.value == "=":
                raise ExprError(tok.pos, "unexpected '=': write '==' to compare")
            raise self.fail(tok, "expected 'and', 'or' or the end of the condition")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at("kw", "or"):
            self.take()
            right = self.and_expr()
            node = Bool("or", node, right, node.pos, right.end)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at("kw", "and"):
            self.take()
            right = self.not_expr()
            node = Bool("and", node, right, node.pos, right.end)
        return node

    def not_expr(self) -> Node:
        if self.at("kw", "not"):
            tok = self.take()
            self.enter(tok)
            operand = self.not_expr()
            self.depth -= 1
            return Not(operand, tok.pos, operand.end)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        tok = self.peek()
        if tok.kind == "op" and tok.value in COMPARISONS:
            self.take()
            right = self.sum()
            return Compare(tok.value, left, right, tok.pos, left.pos, right.end)
        negate = tok.kind == "kw" and tok.value == "not" and self.peek(1).kind == "kw" and self.peek(1).value == "in"
        if negate or (tok.kind == "kw" and tok.value == "in"):
            if negate:
                self.take()
            self.take()
            items, end = self.literal_list()
            return In(left, items, negate, tok.pos, left.pos, end)
        return left

    def literal_list(self) -> tuple[tuple[Lit, ...], int]:
        if not self.at("op", "["):
            raise self.fail(self.peek(), "expected '[' after 'in'")
        self.take()
        items = []
        while True:
            tok = self.peek()
            node = self.unary()
            if not isinstance(node, Lit):
                raise ExprError(tok.pos, "lists after 'in' hold literals only (numbers, strings, true, false)")
            items.append(node)
            if self.at("op", "]"):
                return tuple(items), self.take().end
            if not self.at("op", ","):
                raise self.fail(self.peek(), "expected ',' or ']' in the list")
            self.take()

    def sum(self) -> Node:
        node = self.product()
        while self.peek().kind == "op" and self.peek().value in ("+", "-"):
            tok = self.take()
            right = self.product()
            node = Arith(tok.value, node, right, tok.pos, node.pos, right.end)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek().kind == "op" and self.peek().value in ("*", "/"):
            tok = self.take()
            right = self.unary()
            node = Arith(tok.value, node, right, tok.pos, node.pos, right.end)
        return node

    def unary(self) -> Node:
        if self.at("op", "-"):
            tok = self.take()
            self.enter(tok)
            operand = self.unary()
            self.depth -= 1
            if isinstance(operand, Lit) and operand.kind == "num":
                return Lit("num", -operand.value, tok.pos, operand.end)
            return Neg(operand, tok.pos, operand.end)
        return self.primary()

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(tok.pos, f"condition is nested more than {MAX_DEPTH} levels deep")

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind in ("num", "dur", "str"):
            return Lit(tok.kind, tok.value, tok.pos, tok.end)
        if tok.kind == "kw" and tok.value in ("true", "false"):
            return Lit("bool", tok.value == "true", tok.pos, tok.end)
        if tok.kind == "op" and tok.value == "(":
            self.enter(tok)
            node = self.or_expr()
            self.depth -= 1
            if not self.at("op", ")"):
                raise self.fail(self.peek(), "expected ')'")
            self.take()
            return node
        if tok.kind == "name":
            if self.at("op", "("):
                return self.call(tok)
            return Name(tok.value, tok.pos, tok.end)
        self.i -= 1
        raise self.fail(tok, "expected a value, a name or '('")

    def call(self, name: Token) -> Call:
        self.enter(self.take())  # "("
        args: list[Node] = []
        kwargs: list[Kwarg] = []
        if not self.at("op", ")"):
            while True:
                tok = self.peek()
                if tok.kind == "name" and self.peek(1).kind == "op" and self.peek(1).value == "=":
                    self.i += 2
                    kwargs.append(Kwarg(tok.value, self.unary(), tok.pos))
                elif kwargs:
                    raise ExprError(tok.pos, f"positional argument after a keyword argument in {name.value}()")
                else:
                    args.append(self.or_expr())
                if self.at("op", ")"):
                    break
                if not self.at("op", ","):
                    raise self.fail(self.peek(), f"expected ',' or ')' after an argument of {name.value}()")
                self.take()
        end = self.take().end
        self.depth -= 1
        return Call(name.value, tuple(args), tuple(kwargs), name.pos, end)
