"""The feature spec: which columns a data set has and which features the model uses (a TOML file).

The PaySim spec ships with the package (``models/paysim.toml``) and is the default; any tabular data set
can be described by another spec (see ``docs/model.md``). A spec is immutable; training fills in the
categories it learned from the data with :meth:`FeatureSpec.with_categories` and stores the result
(``to_dict()``) in the model's metadata, so serving uses exactly the training spec.

>>> spec = load_spec()
>>> spec.name, spec.label, spec.required_fields[:2], spec.required_fields[-2:]
('paysim', 'isFraud', ('amount', 'oldbalanceOrg'), ('step', 'type'))
>>> spec.feature_names[5:9]
('errorBalanceOrig', 'errorBalanceDest', 'hour', 'day')
>>> spec.feature_names[-2:]
('type=PAYMENT', 'type=TRANSFER')
>>> FeatureSpec.from_dict(spec.to_dict()) == spec
True
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from models.errors import SpecError
from models.expr import Expression

__all__ = ["FeatureSpec", "load_spec", "parse_spec", "DEFAULT_SPEC", "UNKNOWN_CATEGORY_POLICIES"]

DEFAULT_SPEC = "paysim.toml"
UNKNOWN_CATEGORY_POLICIES = ("reject", "other")
_TOP_KEYS = {"name", "label", "id", "event_time", "type_column", "features", "constants", "derived",
             "categories", "validation", "drift"}
_SECTION_KEYS = {"features": {"numeric", "categorical"}, "validation": {"non_negative", "amount", "unknown_category"},
                 "drift": {"exclude"}}


@dataclass(frozen=True)
class FeatureSpec:
    """Columns and features of one data set. Build it with :func:`load_spec` or :meth:`from_dict`."""

    name: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    derived: tuple[tuple[str, str], ...] = ()
    constants: tuple[tuple[str, float], ...] = ()
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    label: str | None = None
    id: str | None = None
    event_time: str | None = None
    type_column: str | None = None
    non_negative: tuple[str, ...] = ()
    amount: str | None = None
    unknown_category: str = "reject"
    drift_exclude: tuple[str, ...] = ()
    _expressions: tuple[Expression, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.unknown_category not in UNKNOWN_CATEGORY_POLICIES:
            raise SpecError(f"validation.unknown_category: {self.unknown_category!r} is not one of "
                            f"{', '.join(UNKNOWN_CATEGORY_POLICIES)}")
        if not self.numeric and not self.categorical and not self.derived:
            raise SpecError(f"spec {self.name!r}: declares no features")
        exprs = tuple(Expression.parse(src) for _, src in self.derived)
        object.__setattr__(self, "_expressions", exprs)
        seen: set[str] = set()
        for col in (*self.numeric, *self.categorical):
            if col in seen:
                raise SpecError(f"spec {self.name!r}: feature {col!r} is declared twice")
            seen.add(col)
        consts = dict(self.constants)
        derived_names = {name for name, _ in self.derived}
        for (name, src), e in zip(self.derived, exprs):
            if name in seen or name in consts:
                raise SpecError(f"spec {self.name!r}: derived feature {name!r} clashes with a column or constant")
            for ref in e.names:
                if ref in self.categorical:
                    raise SpecError(f"derived.{name}: {ref!r} is categorical; expressions take numeric columns")
                if ref in derived_names and ref not in seen:
                    raise SpecError(f"derived.{name}: uses {ref!r} before it is defined")
            seen.add(name)
        cats = dict(self.categories)
        for col in cats:
            if col not in self.categorical:
                raise SpecError(f"categories.{col}: not a categorical feature")
            if len(set(cats[col])) != len(cats[col]) or not cats[col]:
                raise SpecError(f"categories.{col}: expected a non-empty list of distinct strings")
        for col in (self.label, self.id, self.event_time):
            if col is not None and col in self.required_fields:
                raise SpecError(f"spec {self.name!r}: {col!r} is both a feature input and the label/id/event_time")
        for col in self.non_negative:
            if col not in self.numeric_inputs:
                raise SpecError(f"validation.non_negative: {col!r} is not a numeric input column")
        if self.amount is not None and self.amount not in self.non_negative:
            raise SpecError(f"validation.amount: {self.amount!r} must also be listed in validation.non_negative")
        if self.type_column is not None and self.type_column not in self.categorical:
            raise SpecError(f"type_column: {self.type_column!r} is not a categorical feature")

    # -- derived views ---------------------------------------------------------------------------------
    @property
    def expressions(self) -> tuple[tuple[str, Expression], ...]:
        """``(name, Expression)`` of every derived feature, in evaluation order."""
        return tuple((name, e) for (name, _), e in zip(self.derived, self._expressions))

    @property
    def numeric_inputs(self) -> tuple[str, ...]:
        """Raw numeric columns a record must carry: numeric features, then columns derived features read."""
        derived, consts = dict(self.derived), dict(self.constants)
        refs = [r for e in self._expressions for r in e.names if r not in derived and r not in consts]
        return tuple(dict.fromkeys([*self.numeric, *refs]))

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Every field validation requires, in the order it checks them (numeric inputs, then categorical)."""
        return (*self.numeric_inputs, *self.categorical)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return (*self.numeric, *(name for name, _ in self.derived))

    @property
    def category_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.categories)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Model feature order: numeric features, derived features, then ``column=category`` one-hots."""
        cats = dict(self.categories)
        missing = [c for c in self.categorical if c not in cats]
        if missing:
            raise SpecError(f"spec {self.name!r}: categories of {missing} are not known yet (train first)")
        return (*self.numeric_features, *(f"{c}={v}" for c in self.categorical for v in cats[c]))

    def with_categories(self, learned: Mapping[str, list[str]]) -> "FeatureSpec":
        """A copy whose missing category lists are filled from ``learned`` (declared lists win)."""
        cats = dict(self.categories)
        for col in self.categorical:
            if col not in cats:
                if col not in learned or not len(learned[col]):
                    raise SpecError(f"categorical feature {col!r} has no categories (empty column?)")
                cats[col] = tuple(str(v) for v in learned[col])
        return replace(self, categories=tuple((c, cats[c]) for c in self.categorical), _expressions=())

    # -- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The TOML document as a JSON-able dict; ``from_dict(to_dict())`` gives an equal spec."""
        d: dict[str, Any] = {"name": self.name}
        for key in ("label", "id", "event_time", "type_column"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["features"] = {"numeric": list(self.numeric), "categorical": list(self.categorical)}
        d["constants"] = dict(self.constants)
        d["derived"] = dict(self.derived)
        d["categories"] = {c: list(v) for c, v in self.categories}
        d["validation"] = {"non_negative": list(self.non_negative), "unknown_category": self.unknown_category}
        if self.amount is not None:
            d["validation"]["amount"] = self.amount
        d["drift"] = {"exclude": list(self.drift_exclude)}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "spec") -> "FeatureSpec":
        if not isinstance(d, Mapping):
            raise SpecError(f"{source}: expected a table at the top level")
        unknown = set(d) - _TOP_KEYS
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
        for section, keys in _SECTION_KEYS.items():
            sub = d.get(section, {})
            if not isinstance(sub, Mapping):
                raise SpecError(f"{source}: [{section}] must be a table")
            bad = set(sub) - keys
            if bad:
                raise SpecError(f"{source}: unknown key(s) {sorted(bad)} in [{section}] (allowed: {sorted(keys)})")
        feats = d.get("features", {})
        val = d.get("validation", {})

        def names(value: Any, where: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise SpecError(f"{source}: {where} must be a list of column names")
            return tuple(value)

        def opt_name(key: str) -> str | None:
            v = d.get(key)
            if v is not None and (not isinstance(v, str) or not v):
                raise SpecError(f"{source}: {key} must be a column name")
            return v

        constants = d.get("constants", {})
        for k, v in constants.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SpecError(f"{source}: constants.{k} must be a number, got {v!r}")
        derived = d.get("derived", {})
        for k, v in derived.items():
            if not isinstance(v, str):
                raise SpecError(f"{source}: derived.{k} must be an expression string, got {v!r}")
        categories = d.get("categories", {})
        for k, v in categories.items():
            names(v, f"categories.{k}")
        name = d.get("name", Path(source).stem)
        try:
            return cls(
                name=str(name),
                numeric=names(feats.get("numeric", []), "features.numeric"),
                categorical=names(feats.get("categorical", []), "features.categorical"),
                derived=tuple((str(k), v) for k, v in derived.items()),
                constants=tuple((str(k), float(v)) for k, v in constants.items()),
                categories=tuple((str(k), tuple(v)) for k, v in categories.items()),
                label=opt_name("label"), id=opt_name("id"), event_time=opt_name("event_time"),
                type_column=opt_name("type_column"),
                non_negative=names(val.get("non_negative", []), "validation.non_negative"),
                amount=val.get("amount"),
                unknown_category=val.get("unknown_category", "reject"),
                drift_exclude=names(d.get("drift", {}).get("exclude", []), "drift.exclude"),
            )
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None


def parse_spec(text: str, source: str = "spec") -> FeatureSpec:
    """Parse a spec from TOML text.

    >>> parse_spec('label = "y"\\n[features]\\nnumeric = ["v1", "v2"]').feature_names
    ('v1', 'v2')
    >>> parse_spec('[features]\\nnumeric = ["v1"]\\n[derived]\\nr = "v1 ** 2"')
    Traceback (most recent call last):
    ...
    models.errors.SpecError: spec: expression 'v1 ** 2': expected a number, a name or '(', got '*' at position 4
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: invalid TOML: {e}") from None
    return FeatureSpec.from_dict(doc, source)


def load_spec(path: str | Path | None = None) -> FeatureSpec:
    """Load a spec file; ``None`` loads the PaySim spec shipped with the package."""
    if path is None:
        text = resources.files("models").joinpath(DEFAULT_SPEC).read_text(encoding="utf-8")
        return parse_spec(text, DEFAULT_SPEC)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read spec file {str(p)!r}: {e.strerror}") from None
    return parse_spec(text, str(p))
