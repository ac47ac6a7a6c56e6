"""Severity policy: window statistics (one ``drift.stats`` payload) -> breaches with a type and P1..P4.

The shipped defaults live in ``incident/policy.toml``; a user file is deep-merged over them. Each incident
type is a rule object (:mod:`incident.rules`, registry :data:`~incident.rules.RULES`) built from its
``[types.<name>]`` table; the policy composes the enabled ones, adds the lifecycle counts, the PagerDuty
mapping, the runbook links and the inhibition rules. Every field is read defensively: a missing or
non-numeric statistic is "not evaluated", never an error.

>>> policy = Policy.load()
>>> policy.bands("missing_data").classify(0.12), policy.bands("feature_drift").classify(0.05)
('P2', None)
>>> stats = {"window": {"index": 7}, "model_version": "m1", "missing_ratio": 0.3,
...          "features": {"amount": {"psi": 0.45, "drifted": True, "missing_ratio": 0.0},
...                       "hour": {"psi": 0.01, "drifted": False}}}
>>> [(b.type, b.severity, b.features) for b in policy.evaluate(stats)]
[('feature_drift', 'P1', ('amount',)), ('missing_data', 'P1', ())]
>>> policy.pagerduty_severity("P2"), policy.runbook("missing_data")
('error', 'incident/playbook.md#missing-data')
>>> policy.signals()["stale_data"]
('freshness.lag_p95_s', 'freshness')
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from incident.errors import PolicyError
from incident.rules import RULES, Rule
from incident.rules.core import SEVERITIES, Bands, Breach, get_path, most_severe, number, severity_rank

__all__ = ["SEVERITIES", "INCIDENT_TYPES", "Bands", "Breach", "InhibitRule", "Policy", "most_severe",
           "severity_rank", "get_path", "number"]

#: The incident types of the registry, in evaluation order.
INCIDENT_TYPES = tuple(RULES)
_EQUAL = ("features", "none")
_PAGERDUTY = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager-style inhibition: a source breach mutes target breaches (see policy.toml)."""

    source_types: frozenset[str]
    source_severities: frozenset[str]
    target_types: frozenset[str]
    equal: str
    source_features: frozenset[str] = frozenset()
    target_severities: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, r: Mapping[str, Any], where: str, known: Iterable[str]) -> "InhibitRule":
        if r.get("equal", "none") not in _EQUAL:
            raise PolicyError(f"{where}.equal: expected one of {_EQUAL}, got {r.get('equal')!r}")
        for key in ("source_types", "target_types"):
            bad = set(r.get(key, [])) - set(known)
            if bad or not r.get(key):
                raise PolicyError(f"{where}.{key}: expected a non-empty list of incident types, bad: {sorted(bad)}")
        return cls(frozenset(r["source_types"]), frozenset(r.get("source_severities", [])),
                   frozenset(r["target_types"]), r.get("equal", "none"), frozenset(r.get("source_features", [])),
                   frozenset(r.get("target_severities", [])))

    def source_matches(self, b: Breach) -> bool:
        return (b.type in self.source_types and (not self.source_severities or b.severity in self.source_severities)
                and (not self.source_features or any(b.covers(f) for f in self.source_features)))

    def target_matches(self, b: Breach) -> bool:
        return b.type in self.target_types and (not self.target_severities or b.severity in self.target_severities)


def _deep_merge(base: dict, override: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and not k.endswith("bands"):
            out[k] = _deep_merge(out[k], v)
        else:  # bands replace as a whole: merging would keep bounds the user meant to drop
            out[k] = copy.deepcopy(v)
    return out


def _shipped() -> dict:
    return tomllib.loads(resources.files("incident").joinpath("policy.toml").read_text("utf-8"))


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where}: expected an integer >= 1, got {value!r}")
    return value


class Policy:
    """The incident policy: the enabled rules, lifecycle counts, PagerDuty mapping, inhibition rules.

    Parameters
    ----------
    config : dict
        The whole policy (as parsed from TOML). Use :meth:`load` to start from the shipped defaults.
    rules : mapping of str to Rule subclass
        The rule registry (default :data:`incident.rules.RULES`); a type without a ``[types.<name>]``
        table is disabled.
    """

    def __init__(self, config: Mapping[str, Any], rules: Mapping[str, type[Rule]] = RULES) -> None:
        self.config = copy.deepcopy(dict(config))
        self.registry = dict(rules)
        lc = self.config.get("lifecycle", {})
        self.pending_windows = _positive_int(lc.get("pending_windows", 2), "lifecycle.pending_windows")
        self.resolve_windows = _positive_int(lc.get("resolve_windows", 3), "lifecycle.resolve_windows")
        self.late_windows = _positive_int(lc.get("late_windows", 16), "lifecycle.late_windows")
        opens = lc.get("open_severities", ["P1", "P2", "P3"])
        if not isinstance(opens, list) or not opens or any(s not in SEVERITIES for s in opens):
            raise PolicyError(f"lifecycle.open_severities: expected a non-empty list of {SEVERITIES}, got {opens!r}")
        self.open_severities = frozenset(opens)
        pd = self.config.get("pagerduty", {})
        for sev in SEVERITIES:
            if pd.get(sev) not in _PAGERDUTY:
                raise PolicyError(f"pagerduty.{sev}: expected one of {_PAGERDUTY}, got {pd.get(sev)!r}")
        self._pagerduty = {s: pd[s] for s in SEVERITIES}
        self.runbook_base = str(self.config.get("runbook", {}).get("base", "incident/playbook.md"))
        self.rules = self._build_rules(self.config.get("types", {}))
        #: The enabled types' tables, as configured (read only).
        self.types: dict[str, dict] = {name: rule.config for name, rule in self.rules.items()}
        self.inhibit_rules = [InhibitRule.from_mapping(r, f"inhibit[{i}]", self.registry)
                              for i, r in enumerate(self.config.get("inhibit", []))]

    def _build_rules(self, types: Mapping[str, Any]) -> dict[str, Rule]:
        unknown = set(types) - set(self.registry)
        if unknown:
            raise PolicyError(f"types: unknown incident type(s) {sorted(unknown)}; known: {', '.join(self.registry)}")
        out: dict[str, Rule] = {}
        for name, cls in self.registry.items():
            table = types.get(name, {"enabled": False})
            if not isinstance(table, Mapping):
                raise PolicyError(f"types.{name}: expected a table, got {table!r}")
            if table.get("enabled", True):
                out[name] = cls({k: v for k, v in table.items() if k != "enabled"}, self.open_severities)
        return out

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
             rules: Mapping[str, type[Rule]] = RULES) -> "Policy":
        """The shipped defaults, deep-merged with the TOML file at ``path`` and then ``overrides``."""
        config = _shipped()
        if path is not None:
            try:
                user = tomllib.loads(Path(path).read_text("utf-8"))
            except FileNotFoundError:
                raise PolicyError(f"policy file {str(path)!r} does not exist") from None
            except tomllib.TOMLDecodeError as e:
                raise PolicyError(f"policy file {str(path)!r} is not valid TOML: {e}") from None
            config = _deep_merge(config, user)
        if overrides:
            config = _deep_merge(config, overrides)
        return cls(config, rules)

    # -- lookups -----------------------------------------------------------------------------------
    def rule(self, incident_type: str) -> Rule:
        """The enabled rule of ``incident_type`` (``KeyError`` when it is disabled or unknown)."""
        return self.rules[incident_type]

    def bands(self, incident_type: str) -> Bands:
        return self.rules[incident_type].bands

    def pagerduty_severity(self, severity: str) -> str:
        return self._pagerduty[severity]

    def runbook(self, incident_type: str) -> str:
        rule = self.rules.get(incident_type)
        if rule is not None:
            anchor = rule.runbook_anchor
        elif incident_type in self.registry:
            anchor = self.registry[incident_type].anchor
        else:
            anchor = incident_type.replace("_", "-")
        return f"{self.runbook_base}#{anchor}"

    def group_by(self, incident_type: str) -> str:
        rule = self.rules.get(incident_type)
        return rule.group_by if rule is not None else "type"

    def opens(self, severity: str) -> bool:
        return severity in self.open_severities

    def signals(self) -> dict[str, tuple[str, ...]]:
        """The drift.stats fields each enabled rule reads (dotted paths; ``*`` is any feature name)."""
        return {name: rule.signals for name, rule in self.rules.items()}

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        """Breaches of one window at a severity that opens incidents, before inhibition, in type order."""
        out: list[Breach] = []
        for rule in self.rules.values():
            out.extend(rule.evaluate(stats))
        return [b for b in out if self.opens(b.severity)]

    # -- inhibition --------------------------------------------------------------------------------
    def inhibit(self, breaches: list[Breach], sources: Iterable[Breach] = ()) -> tuple[list[Breach], list[dict]]:
        """Apply the inhibit rules. ``sources``: breaches of firing incidents, besides this window's.

        Returns the surviving breaches (feature_drift ones possibly with fewer features and a recomputed
        severity) and a list of what was muted and why.

        >>> p = Policy.load()
        >>> miss = Breach("missing_data", "P2", ("amount",), 0.2, "")
        >>> drift = p.rule("feature_drift").breach({"amount": {"psi": 0.5, "severity": "P1"},
        ...                                         "hour": {"psi": 0.15, "severity": "P3"}})
        >>> kept, muted = p.inhibit([miss, drift])
        >>> [(b.type, b.severity, b.features) for b in kept], muted[0]["features"]
        ([('missing_data', 'P2', ('amount',)), ('feature_drift', 'P3', ('hour',))], ['amount'])
        """
        sources = list(sources)
        first, _ = self._inhibit_once(breaches, list(breaches) + sources)
        # Second pass: a breach that was muted entirely is no source (no cycles of mutual muting).
        alive = {b.type for b in first}
        return self._inhibit_once(breaches, [b for b in breaches if b.type in alive] + sources)

    def _inhibit_once(self, breaches: list[Breach], pool: list[Breach]) -> tuple[list[Breach], list[dict]]:
        kept: list[Breach] = []
        muted: list[dict] = []
        for b in breaches:
            cur: Breach | None = b
            for rule in self.inhibit_rules:
                if cur is None or not rule.target_matches(cur):
                    continue
                srcs = [s for s in pool if s is not b and s.type != b.type and rule.source_matches(s)]
                if not srcs:
                    continue
                if rule.equal == "none":
                    muted.append({"type": cur.type, "by": sorted({s.type for s in srcs}), "features": list(cur.features)})
                    cur = None
                    break
                gone = [f for f in cur.features if any(s.covers(f) for s in srcs)]
                if not gone:
                    continue
                muted.append({"type": cur.type, "by": sorted({s.type for s in srcs if any(s.covers(f) for f in gone)}),
                              "features": gone})
                cur = self._without(cur, set(gone))
            if cur is not None:
                kept.append(cur)
        return kept, muted

    def _feature_drift_breach(self, per: Mapping[str, dict], bands: Bands | None = None) -> Breach:
        """Old private name of ``policy.rule("feature_drift").breach(per)``, still used by
        tests/test_incident_e2e.py; remove it once that test calls the rule."""
        return self.rules["feature_drift"].breach(per)

    def _without(self, b: Breach, gone: set[str]) -> Breach | None:
        rule = self.rules.get(b.type)
        if rule is not None:
            return rule.without(b, gone)
        left = [f for f in b.features if f not in gone]
        return Breach(b.type, b.severity, tuple(left), b.value, b.summary, b.evidence, b.covers_all) if left else None
