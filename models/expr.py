"""A tiny, safe expression language for derived features, evaluated vectorised over numpy columns.

Grammar (no attribute access, no calls but the whitelisted functions, no ``eval``)::

    expr  := sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum]
    sum   := term (("+" | "-") term)*
    term  := unary (("*" | "/" | "//" | "%") unary)*
    unary := "-" unary | atom
    atom  := NUMBER | NAME | FUNC "(" expr ("," expr)* ")" | "(" expr ")"

Names are columns or constants; ``FUNC`` is one of ``abs``, ``min``, ``max``, ``log1p``. Comparisons give
1.0 or 0.0, so ``(a == 0) * (b == 0)`` is "a and b are zero". Arithmetic is float64; ``%`` and ``//`` are
floor-based like Python's (``(0 - 1) % 24 == 23``).

>>> import numpy as np
>>> e = Expression.parse("newbalanceOrig + amount - oldbalanceOrg")
>>> e.names
('newbalanceOrig', 'amount', 'oldbalanceOrg')
>>> e.evaluate({"newbalanceOrig": np.array([0.0, 5.0]), "amount": np.array([10.0, 1.0]),
...             "oldbalanceOrg": np.array([10.0, 4.0])})
array([0., 2.])
>>> Expression.parse("(step - 1) % 24").evaluate({"step": np.array([1, 24, 25])})
array([ 0., 23.,  0.])
>>> Expression.parse("amount > limit").evaluate({"amount": np.array([1.0, 3.0])}, {"limit": 2.0})
array([0., 1.])
>>> Expression.parse("__import__('os')")
Traceback (most recent call last):
...
models.errors.SpecError: expression "__import__('os')": unexpected character "'" at position 11
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import numpy as np

from models.errors import SpecError

__all__ = ["Expression", "FUNCTIONS"]

FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, np.abs),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
    "log1p": (1, np.log1p),
}
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
    "//": np.floor_divide, "%": np.mod,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal,
}
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>//|<=|>=|==|!=|[-+*/%<>(),]))")

# AST nodes are tuples: ("num", float) | ("name", str) | ("neg", node) | ("bin", op, a, b) | ("call", f, [args])
Node = tuple


class Expression:
    """A parsed expression; :meth:`evaluate` maps columns (and constants) to a float64 array."""

    def __init__(self, source: str, tree: Node) -> None:
        self.source = source
        self._tree = tree
        names: list[str] = []
        _collect_names(tree, names)
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names))

    @classmethod
    def parse(cls, source: str) -> "Expression":
        if not isinstance(source, str) or not source.strip():
            raise SpecError(f"expression {source!r}: expected a non-empty string")
        return cls(source, _Parser(source).parse())

    def evaluate(self, columns: Mapping[str, Any], constants: Mapping[str, float] | None = None) -> np.ndarray:
        """Evaluate over equally long columns; a name absent from both mappings raises :class:`SpecError`."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = _eval(self._tree, columns, constants or {}, self.source)
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _collect_names(node: Node, out: list[str]) -> None:
    kind = node[0]
    if kind == "name":
        out.append(node[1])
    elif kind == "neg":
        _collect_names(node[1], out)
    elif kind == "bin":
        _collect_names(node[2], out)
        _collect_names(node[3], out)
    elif kind == "call":
        for a in node[2]:
            _collect_names(a, out)


def _eval(node: Node, columns: Mapping[str, Any], constants: Mapping[str, float], source: str) -> Any:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        name = node[1]
        if name in columns:
            return np.asarray(columns[name], dtype=np.float64)
        if name in constants:
            return float(constants[name])
        raise SpecError(f"expression {source!r}: unknown name {name!r}")
    if kind == "neg":
        return np.negative(_eval(node[1], columns, constants, source))
    if kind == "bin":
        a = _eval(node[2], columns, constants, source)
        b = _eval(node[3], columns, constants, source)
        r = _BINARY[node[1]](a, b)
        return r.astype(np.float64) if node[1] in _COMPARISONS else r
    _, fname, args = node
    return FUNCTIONS[fname][1](*(_eval(a, columns, constants, source) for a in args))


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[tuple[str, str, int]] = []
        pos, text = 0, source
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                at = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise SpecError(f"expression {source!r}: unexpected character {text[at]!r} at position {at}")
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def _fail(self, what: str) -> SpecError:
        if self.i < len(self.tokens):
            tok = self.tokens[self.i]
            return SpecError(f"expression {self.source!r}: {what}, got {tok[1]!r} at position {tok[2]}")
        return SpecError(f"expression {self.source!r}: {what}, got the end of the expression")

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self._comparison()
        if self.i != len(self.tokens):
            raise self._fail("expected an operator")
        return node

    def _comparison(self) -> Node:
        node = self._sum()
        if self._peek() in _COMPARISONS and self.tokens[self.i][0] == "op":
            op = self._take()[1]
            node = ("bin", op, node, self._sum())
            if self._peek() in _COMPARISONS:
                raise self._fail("chained comparisons are not supported")
        return node

    def _sum(self) -> Node:
        node = self._term()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            node = ("bin", op, node, self._term())
        return node

    def _term(self) -> Node:
        node = self._unary()
        while self._peek() in ("*", "/", "//", "%"):
            op = self._take()[1]
            node = ("bin", op, node, self._unary())
        return node

    def _unary(self) -> Node:
        if self._peek() == "-":
            self._take()
            return ("neg", self._unary())
        return self._atom()

    def _atom(self) -> Node:
        if self.i >= len(self.tokens):
            raise self._fail("expected a number, a name or '('")
        kind, text, _ = self.tokens[self.i]
        if kind == "num":
            self.i += 1
            return ("num", float(text))
        if kind == "name":
            self.i += 1
            if self._peek() == "(":
                if text not in FUNCTIONS:
                    self.i -= 1
                    raise self._fail(f"unknown function (allowed: {', '.join(FUNCTIONS)})")
                self._take()
                args = [self._comparison()]
                while self._peek() == ",":
                    self._take()
                    args.append(self._comparison())
                if self._peek() != ")":
                    raise self._fail("expected ')'")
                self._take()
                if len(args) != FUNCTIONS[text][0]:
                    raise SpecError(f"expression {self.source!r}: {text}() takes {FUNCTIONS[text][0]} argument(s), "
                                    f"got {len(args)}")
                return ("call", text, args)
            return ("name", text)
        if text == "(":
            self._take()
            node = self._comparison()
            if self._peek() != ")":
                raise self._fail("expected ')'")
            self._take()
            return node
        raise self._fail("expected a number, a name or '('")
