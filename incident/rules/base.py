"""The protocol of an incident rule (:class:`Rule`) and the shape most rules share (:class:`ScalarRule`).

A rule is one incident type: it reads named fields of one ``drift.stats`` payload (:attr:`Rule.signals`),
turns them into breaches (:meth:`Rule.evaluate`), says in plain words what an incident of its type most
likely means (:meth:`Rule.explain`, for RCA) and where its playbook section is (:attr:`Rule.anchor`). Its
table in ``policy.toml`` (``[types.<name>]``) is validated when the rule is built.

>>> class Lag(ScalarRule):
...     name, anchor = "stale_data", "stale-data"
...     def evaluate(self, stats):
...         return self.scalar_breach(stats, lambda v, b, r: f"lag {v:.0f} s")
>>> rule = Lag({"statistic": "freshness.lag_p95_s", "bands": {"P1": 3600.0, "P2": 300.0}})
>>> [(b.type, b.severity, b.summary) for b in rule.evaluate({"freshness": {"lag_p95_s": 900}})]
[('stale_data', 'P2', 'P2 lag 900 s')]
>>> rule.signals
('freshness.lag_p95_s',)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping

from incident.errors import PolicyError
from incident.rules.core import SEVERITIES, Bands, Breach, get_path, number

__all__ = ["GROUP_BY", "DEFAULT_OPEN", "ReferenceLearning", "Rule", "ScalarRule"]

GROUP_BY = ("type", "feature")
DEFAULT_OPEN = ("P1", "P2", "P3")


@dataclass(frozen=True)
class ReferenceLearning:
    """How the incident manager learns a rule's normal level when the payload does not carry it: the median
    of the ``statistic`` over the last ``windows`` windows in which the rule did not breach, injected as
    ``reference.<statistic>`` once ``min_windows`` were seen."""

    statistic: str
    paths: tuple[str, ...]
    windows: int
    min_windows: int

    @property
    def key(self) -> str:
        """The key under the payload's ``reference`` table that the learned value is injected as."""
        return self.statistic


class Rule:
    """One incident type. Subclasses set :attr:`name` and :attr:`anchor` and implement :meth:`evaluate`,
    :attr:`signals` and :meth:`explain`; their constructors validate their own keys.

    Parameters
    ----------
    config : mapping
        The rule's ``[types.<name>]`` table (``bands`` required; ``group_by``, ``anchor`` optional).
    open_severities : iterable of str
        Severities that open incidents (``lifecycle.open_severities``): a rule leaves out of a breach the
        parts that would not open one (a feature flagged P4 is not named in a P1 drift breach).
    """

    name: ClassVar[str] = ""
    #: The playbook section id (``incident/playbook.md#<anchor>``); ``anchor`` in the table overrides it.
    anchor: ClassVar[str] = ""

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        self.config = dict(config)
        self.where = f"types.{self.name}"
        self.open_severities = frozenset(open_severities)
        self.bands = Bands.from_mapping(self.config.get("bands"), f"{self.where}.bands")
        self.group_by = self.config.get("group_by", "type")
        if self.group_by not in GROUP_BY:
            raise PolicyError(f"{self.where}.group_by: expected one of {GROUP_BY}, got {self.group_by!r}")
        self.runbook_anchor = str(self.config.get("anchor", self.anchor))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bands={dict(self.bands.bounds)})"

    # -- helpers for subclasses --------------------------------------------------------------------
    def opens(self, severity: str | None) -> bool:
        return severity is not None and severity in self.open_severities

    def severity_option(self, key: str, default: str) -> str:
        value = self.config.get(key, default)
        if value not in SEVERITIES:
            raise PolicyError(f"{self.where}.{key}: expected one of {SEVERITIES}, got {value!r}")
        return value

    def number_option(self, key: str, default: float | None, minimum: float = 0.0) -> float | None:
        value = self.config.get(key, default)
        if value is None:
            return None
        if number(value) is None or value < minimum:
            raise PolicyError(f"{self.where}.{key}: expected a number >= {minimum}, got {value!r}")
        return float(value)

    def list_option(self, key: str, default: Iterable[str] = (), allowed: Iterable[str] | None = None) -> tuple[str, ...]:
        value = self.config.get(key, list(default))
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{self.where}.{key}: expected a list of strings, got {value!r}")
        if allowed is not None:
            bad = sorted(set(value) - set(allowed))
            if bad:
                raise PolicyError(f"{self.where}.{key}: unknown {bad}; expected some of {sorted(allowed)}")
        return tuple(value)

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def signals(self) -> tuple[str, ...]:
        """The drift.stats fields this rule reads, as dotted paths (``features.*.psi``: every feature's)."""
        raise NotImplementedError

    @property
    def learning(self) -> ReferenceLearning | None:
        """How to learn this rule's reference level when the payload has none (``None``: not learned)."""
        return None

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        """This window's breaches of the type (possibly at a severity that opens nothing)."""
        raise NotImplementedError

    def without(self, breach: Breach, gone: set[str]) -> Breach | None:
        """``breach`` with the ``gone`` features muted (inhibition); ``None`` when none is left."""
        left = [f for f in breach.features if f not in gone]
        if not left:
            return None
        return Breach(breach.type, breach.severity, tuple(left), breach.value, breach.summary, breach.evidence,
                      breach.covers_all)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        """The likely cause in plain words, from the incident's latest event and (for RCA) the feature row
        that changed first (:func:`incident.rca.first_changed`), or ``None``."""
        raise NotImplementedError


class ScalarRule(Rule):
    """A rule on one number of the payload (``statistic``, a dotted path) against ``bands``.

    Optional keys: ``reference`` (paths; the bands then apply to the excess over the first one present, or
    ``reference_default``; with neither the rule is not evaluated), ``count`` and ``min_z`` (the excess
    must be ``min_z`` binomial standard errors for a window of ``count`` events), and
    ``learn_reference_windows`` / ``learn_min_windows`` (see :class:`ReferenceLearning`).
    """

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        statistic = self.config.get("statistic")
        if not isinstance(statistic, str) or not statistic:
            raise PolicyError(f"{self.where}.statistic: expected a drift.stats field path, got {statistic!r}")
        self.statistic = statistic
        self.reference_paths = self.list_option("reference")
        self.reference_default = self.number_option("reference_default", None)
        count = self.config.get("count")
        self.count_path = count if isinstance(count, str) and count else None
        self.min_z = self.number_option("min_z", None)
        self._learning = self._learning_option()

    def _learning_option(self) -> ReferenceLearning | None:
        windows = self.config.get("learn_reference_windows")
        if not windows:
            return None
        least = self.config.get("learn_min_windows", 3)
        for key, value in (("learn_reference_windows", windows), ("learn_min_windows", least)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PolicyError(f"{self.where}.{key}: expected an integer >= 1, got {value!r}")
        learning = ReferenceLearning(self.statistic, self.reference_paths, windows, least)
        if f"reference.{learning.key}" not in self.reference_paths:
            raise PolicyError(f"{self.where}.reference: a learned reference is injected as "
                              f"'reference.{learning.key}', which must be one of the reference paths")
        return learning

    @property
    def signals(self) -> tuple[str, ...]:
        return (self.statistic, *self.reference_paths) + ((self.count_path,) if self.count_path else ())

    @property
    def learning(self) -> ReferenceLearning | None:
        return self._learning

    def reference(self, stats: Mapping[str, Any]) -> float | None:
        for path in self.reference_paths:
            ref = number(get_path(stats, path))
            if ref is not None:
                return ref
        return self.reference_default

    def measure(self, stats: Mapping[str, Any]) -> tuple[str | None, float | None, float | None]:
        """(severity or ``None``, the statistic or ``None`` when not evaluated, the reference)."""
        ref = self.reference(stats)
        if ref is None and self.reference_paths:
            return None, None, None  # a rule measured against a reference is not evaluated without one
        ref = ref or 0.0
        value = number(get_path(stats, self.statistic))
        if value is None:
            return None, None, ref
        excess = value - ref
        n = number(get_path(stats, self.count_path)) if self.count_path else None
        if self.min_z is not None and n:
            p = min(max(ref, 1.0 / n), 1 - 1.0 / n)
            if excess / math.sqrt(p * (1 - p) / n) < self.min_z:
                return None, value, ref  # not significant for this window's size
        return self.bands.classify(excess), value, ref

    def scalar_breach(self, stats: Mapping[str, Any], text: Callable[[float, float | None, float], str],
                      features: Iterable[str] = (), covers_all: bool = False, extra: Mapping | None = None) -> list[Breach]:
        """The one breach of the statistic, summarised by ``text(value, band bound, reference)``."""
        sev, value, ref = self.measure(stats)
        if value is None or sev is None:
            return []
        evidence = {"statistic": self.statistic, "value": value, "bands": dict(self.bands.bounds)}
        if ref:
            evidence["reference"] = ref
        evidence.update(extra or {})
        return [Breach(self.name, sev, tuple(sorted(features)), value,
                       f"{sev} {text(value, self.bands.bound(sev), ref)}", evidence, covers_all)]
