"""Severity policy: window statistics (one ``drift.stats`` payload) -> breaches with a type and P1..P4.

The shipped defaults live in ``incident/policy.toml``; a user file is deep-merged over them. Every field is
read defensively: a missing or non-numeric statistic is "not evaluated", never an error.

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
"""
from __future__ import annotations

import copy
import fnmatch
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from incident.errors import PolicyError

__all__ = ["SEVERITIES", "INCIDENT_TYPES", "Bands", "Breach", "InhibitRule", "Policy", "most_severe",
           "severity_rank", "get_path", "number"]

SEVERITIES = ("P1", "P2", "P3", "P4")
INCIDENT_TYPES = ("feature_drift", "missing_data", "schema_mismatch", "corrupted_balances", "stale_data",
                  "dead_letter_spike", "score_drift", "concept_drift")
_GROUP_BY = ("type", "feature")
_EQUAL = ("features", "none")


def severity_rank(severity: str) -> int:
    """0 for P1 (most severe) .. 3 for P4.

    >>> sorted(["P3", "P1", "P4"], key=severity_rank)
    ['P1', 'P3', 'P4']
    """
    return SEVERITIES.index(severity)


def most_severe(severities: Iterable[str], default: str = "P4") -> str:
    """The most severe of ``severities`` (``default`` when empty).

    >>> most_severe(["P3", "P2"]), most_severe([])
    ('P2', 'P4')
    """
    return min(severities, key=severity_rank, default=default)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (bools, strings, NaN and inf are not numbers here).

    >>> number(3), number(True), number(float("nan")), number("0.2")
    (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def get_path(doc: Any, path: str) -> Any:
    """``doc["a"]["b"]`` for ``path="a.b"``; ``None`` if any step is missing or not a mapping.

    >>> get_path({"freshness": {"lag_p95_s": 12}}, "freshness.lag_p95_s"), get_path({}, "a.b")
    (12, None)
    """
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


@dataclass(frozen=True)
class Bands:
    """Lower bounds per severity; a value at or above a bound gets that severity (most severe wins).

    Below every bound (or no value) is ``None``: no breach. A ``P4`` bound is allowed (info-only breaches,
    which open incidents only if ``lifecycle.open_severities`` includes P4).

    >>> b = Bands.from_mapping({"P1": 0.4, "P2": 0.2, "P3": 0.1}, "bands")
    >>> [b.classify(v) for v in (0.5, 0.4, 0.39, 0.1, 0.0999, None)]
    ['P1', 'P1', 'P2', 'P3', None, None]
    """

    bounds: tuple[tuple[str, float], ...]

    @classmethod
    def from_mapping(cls, mapping: Any, where: str) -> "Bands":
        if not isinstance(mapping, Mapping) or not mapping:
            raise PolicyError(f"{where}: expected a table of severity = lower bound, e.g. {{ P1 = 0.4 }}")
        bounds = []
        for sev, bound in mapping.items():
            if sev not in SEVERITIES:
                raise PolicyError(f"{where}: {sev!r} is not one of {', '.join(SEVERITIES)}")
            if number(bound) is None:
                raise PolicyError(f"{where}.{sev}: expected a finite number, got {bound!r}")
            bounds.append((sev, float(bound)))
        bounds.sort(key=lambda sb: severity_rank(sb[0]))
        for (s1, b1), (s2, b2) in zip(bounds, bounds[1:]):
            if b1 < b2:
                raise PolicyError(f"{where}: bound of {s1} ({b1}) is below the bound of {s2} ({b2})")
        return cls(tuple(bounds))

    def classify(self, value: float | None) -> str | None:
        if value is None:
            return None
        for sev, bound in self.bounds:
            if value >= bound:
                return sev
        return None

    def bound(self, severity: str) -> float | None:
        return dict(self.bounds).get(severity)


@dataclass(frozen=True)
class Breach:
    """One incident type breached in one window.

    ``features`` are the affected features (sorted); ``covers_all`` says the breach concerns every
    feature (a schema break); ``evidence`` is JSON-able (per-feature scores, thresholds, ...).
    """

    type: str
    severity: str
    features: tuple[str, ...]
    value: float | None
    summary: str
    evidence: dict = field(default_factory=dict, compare=False)
    covers_all: bool = False

    def covers(self, feature: str) -> bool:
        return self.covers_all or feature in self.features


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager-style inhibition: a source breach mutes target breaches (see policy.toml)."""

    source_types: frozenset[str]
    source_severities: frozenset[str]
    target_types: frozenset[str]
    equal: str
    source_features: frozenset[str] = frozenset()
    target_severities: frozenset[str] = frozenset()

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


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


class Policy:
    """The incident policy: thresholds per incident type, lifecycle counts, inhibition rules.

    Parameters
    ----------
    config : dict
        The whole policy (as parsed from TOML). Use :meth:`load` to start from the shipped defaults.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = copy.deepcopy(dict(config))
        lc = self.config.get("lifecycle", {})
        self.pending_windows = self._int(lc.get("pending_windows", 2), "lifecycle.pending_windows")
        self.resolve_windows = self._int(lc.get("resolve_windows", 3), "lifecycle.resolve_windows")
        self.late_windows = self._int(lc.get("late_windows", 16), "lifecycle.late_windows")
        opens = lc.get("open_severities", ["P1", "P2", "P3"])
        if not isinstance(opens, list) or not opens or any(s not in SEVERITIES for s in opens):
            raise PolicyError(f"lifecycle.open_severities: expected a non-empty list of {SEVERITIES}, got {opens!r}")
        self.open_severities = frozenset(opens)
        pd = self.config.get("pagerduty", {})
        allowed_pd = ("critical", "error", "warning", "info")
        for sev in SEVERITIES:
            if pd.get(sev) not in allowed_pd:
                raise PolicyError(f"pagerduty.{sev}: expected one of {allowed_pd}, got {pd.get(sev)!r}")
        self._pagerduty = {s: pd[s] for s in SEVERITIES}
        self.runbook_base = str(self.config.get("runbook", {}).get("base", "incident/playbook.md"))
        types = self.config.get("types", {})
        unknown = set(types) - set(INCIDENT_TYPES)
        if unknown:
            raise PolicyError(f"types: unknown incident type(s) {sorted(unknown)}; known: {', '.join(INCIDENT_TYPES)}")
        self.types: dict[str, dict] = {}
        self._bands: dict[str, Bands] = {}
        for name in INCIDENT_TYPES:
            t = dict(types.get(name, {"enabled": False}))
            if not t.get("enabled", True):
                continue
            self._bands[name] = Bands.from_mapping(t.get("bands"), f"types.{name}.bands")
            if t.get("group_by", "type") not in _GROUP_BY:
                raise PolicyError(f"types.{name}.group_by: expected one of {_GROUP_BY}, got {t.get('group_by')!r}")
            for key in ("flag_only_severity", "flag_severity"):
                if key in t and t[key] not in SEVERITIES:
                    raise PolicyError(f"types.{name}.{key}: expected one of {SEVERITIES}, got {t[key]!r}")
            self.types[name] = t
        fr = self.types.get("score_drift", {}).get("fraud_rate_bands")
        self._fraud_rate_bands = None if fr is None else Bands.from_mapping(fr, "types.score_drift.fraud_rate_bands")
        self.inhibit_rules = []
        for i, r in enumerate(self.config.get("inhibit", [])):
            where = f"inhibit[{i}]"
            if r.get("equal", "none") not in _EQUAL:
                raise PolicyError(f"{where}.equal: expected one of {_EQUAL}, got {r.get('equal')!r}")
            for key in ("source_types", "target_types"):
                bad = set(r.get(key, [])) - set(INCIDENT_TYPES)
                if bad or not r.get(key):
                    raise PolicyError(f"{where}.{key}: expected a non-empty list of incident types, bad: {sorted(bad)}")
            self.inhibit_rules.append(InhibitRule(frozenset(r["source_types"]),
                                                  frozenset(r.get("source_severities", [])),
                                                  frozenset(r["target_types"]), r.get("equal", "none"),
                                                  frozenset(r.get("source_features", [])),
                                                  frozenset(r.get("target_severities", []))))

    @staticmethod
    def _int(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PolicyError(f"{where}: expected an integer >= 1, got {value!r}")
        return value

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> "Policy":
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
        return cls(config)

    # -- lookups -----------------------------------------------------------------------------------
    def bands(self, incident_type: str) -> Bands:
        return self._bands[incident_type]

    def pagerduty_severity(self, severity: str) -> str:
        return self._pagerduty[severity]

    def runbook(self, incident_type: str) -> str:
        anchor = self.types.get(incident_type, {}).get("anchor", incident_type.replace("_", "-"))
        return f"{self.runbook_base}#{anchor}"

    def group_by(self, incident_type: str) -> str:
        return self.types.get(incident_type, {}).get("group_by", "type")

    def opens(self, severity: str) -> bool:
        return severity in self.open_severities

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        """Breaches of one window at a severity that opens incidents, before inhibition, in type order."""
        out: list[Breach] = []
        for name in self.types:
            out.extend(getattr(self, f"_eval_{name}")(stats, self.types[name], self._bands[name]))
        return [b for b in out if self.opens(b.severity)]

    def _eval_feature_drift(self, stats, cfg, bands) -> list[Breach]:
        features = stats.get("features")
        if not isinstance(features, Mapping):
            return []
        global_thr = number(get_path(stats, "thresholds.psi"))
        exclude = set(cfg.get("exclude", []))
        flag_sev = cfg.get("flag_only_severity", "P4")
        per: dict[str, dict] = {}
        for name, f in features.items():
            if name in exclude or not isinstance(f, Mapping):
                continue
            psi, drifted = number(f.get("psi")), f.get("drifted")
            drifted = drifted if isinstance(drifted, bool) else None
            if psi is None and drifted is not True:
                continue  # not evaluated
            thr = number(f.get("threshold_psi"))
            thr = global_thr if thr is None else thr
            if (cfg.get("respect_calibrated_threshold", True) and drifted is False and thr is not None
                    and psi is not None and psi < thr):
                continue  # below the calibrated noise floor for this window size
            sev = bands.classify(psi)
            if sev is None and drifted is True:
                sev = flag_sev
            if sev is None or not self.opens(sev):
                continue
            ev = {k: f[k] for k in ("kind", "psi", "ks_d", "ks_pvalue", "chi2", "chi2_pvalue", "missing_ratio",
                                    "count", "drifted") if k in f}
            ev["severity"] = sev
            if thr is not None:
                ev["threshold_psi"] = thr
            per[name] = ev
        if not per:
            return []
        groups = [sorted(per)] if cfg.get("group_by", "type") == "type" else [[n] for n in sorted(per)]
        return [self._feature_drift_breach({n: per[n] for n in g}, bands) for g in groups]

    @staticmethod
    def _feature_drift_breach(per: dict[str, dict], bands: Bands) -> Breach:
        sev = most_severe(e["severity"] for e in per.values())
        psis = [number(e.get("psi")) for e in per.values()]
        top = max((p for p in psis if p is not None), default=None)
        names = sorted(per)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        bound = bands.bound(sev)
        why = f"max PSI {_fmt(top)}" + (f" >= {_fmt(bound)}" if bound is not None else " (calibrated flag)")
        return Breach("feature_drift", sev, tuple(names), top, f"{sev} feature drift on {shown} ({why})",
                      {"features": per, "bands": dict(bands.bounds)})

    @staticmethod
    def _scalar(stats, cfg, bands) -> tuple[str | None, float | None, float]:
        value = number(get_path(stats, cfg["statistic"]))
        ref = None
        for path in cfg.get("reference", []):
            ref = number(get_path(stats, path))
            if ref is not None:
                break
        if ref is None:
            ref = number(cfg.get("reference_default"))
        if ref is None and cfg.get("reference"):
            return None, None, None  # a rule measured against a reference is not evaluated without one
        ref = ref or 0.0
        if value is None:
            return None, None, ref
        excess = value - ref
        n = number(get_path(stats, cfg["count"])) if cfg.get("count") else None
        if cfg.get("min_z") is not None and n:
            p = min(max(ref, 1.0 / n), 1 - 1.0 / n)
            if excess / math.sqrt(p * (1 - p) / n) < float(cfg["min_z"]):
                return None, value, ref  # not significant for this window's size
        return bands.classify(excess), value, ref

    @staticmethod
    def _pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.3g}%"

    def _simple(self, stats, cfg, bands, name: str, text, features=(), covers_all=False, extra=None) -> list[Breach]:
        sev, value, ref = self._scalar(stats, cfg, bands)
        if value is None or sev is None or not self.opens(sev):
            return []
        bound = bands.bound(sev)
        evidence = {"statistic": cfg["statistic"], "value": value, "bands": dict(bands.bounds)}
        if ref:
            evidence["reference"] = ref
        evidence.update(extra or {})
        return [Breach(name, sev, tuple(sorted(features)), value, f"{sev} {text(value, bound, ref)}", evidence,
                       covers_all)]

    def _eval_missing_data(self, stats, cfg, bands) -> list[Breach]:
        feats = stats.get("features") if isinstance(stats.get("features"), Mapping) else {}
        floor = float(cfg.get("feature_missing_ratio", 0.01))
        per = {n: number(f.get("missing_ratio")) for n, f in feats.items() if isinstance(f, Mapping)}
        per = {n: v for n, v in per.items() if v is not None and v >= floor}
        extra = {"feature_missing_ratio": per}
        if isinstance(stats.get("dlq_by_reason"), Mapping):
            extra["dlq_by_reason"] = dict(stats["dlq_by_reason"])
        return self._simple(stats, cfg, bands, "missing_data",
                            lambda v, b, r: f"missing data in {self._pct(v)} of events (>= {self._pct(b)})"
                            + (f"; features: {', '.join(sorted(per))}" if per else ""),
                            features=per, extra=extra)

    def _eval_schema_mismatch(self, stats, cfg, bands) -> list[Breach]:
        reasons = stats.get("dlq_by_reason")
        events = number(get_path(stats, "window.events"))
        value = None
        if cfg.get("reasons") and isinstance(reasons, Mapping) and events:
            value = sum(number(reasons.get(r)) or 0.0 for r in cfg["reasons"]) / events
        else:
            value = number(get_path(stats, cfg["statistic"]))
        feats = stats.get("features") if isinstance(stats.get("features"), Mapping) else {}
        floor = number(cfg.get("vanished_field_ratio"))
        vanished = {}
        if floor is not None:
            vanished = {n: m for n, f in feats.items() if isinstance(f, Mapping)
                        and (m := number(f.get("missing_ratio"))) is not None and m >= floor}
        if vanished:
            value = max(value or 0.0, max(vanished.values()))
        sev = bands.classify(value)
        if value is None or sev is None or not self.opens(sev):
            return []
        text = f"{sev} schema mismatch in {self._pct(value)} of events (>= {self._pct(bands.bound(sev))})"
        if vanished:
            text += f"; field(s) gone from nearly every event: {', '.join(sorted(vanished))}"
        evidence = {"statistic": "dlq_by_reason" if cfg.get("reasons") and isinstance(reasons, Mapping) and events
                    else cfg["statistic"], "value": value, "reasons": list(cfg.get("reasons", [])),
                    "vanished_fields": vanished, "bands": dict(bands.bounds)}
        if isinstance(reasons, Mapping):
            evidence["dlq_by_reason"] = dict(reasons)
        return [Breach("schema_mismatch", sev, tuple(sorted(vanished)), value, text, evidence, True)]

    def _eval_corrupted_balances(self, stats, cfg, bands) -> list[Breach]:
        return self._simple(stats, cfg, bands, "corrupted_balances",
                            lambda v, b, r: f"balances do not add up in {self._pct(v)} of events "
                                            f"(reference {self._pct(r)}, excess >= {self._pct(b)})",
                            features=cfg.get("features", []))

    def _eval_stale_data(self, stats, cfg, bands) -> list[Breach]:
        extra = {"freshness": dict(stats["freshness"])} if isinstance(stats.get("freshness"), Mapping) else {}
        return self._simple(stats, cfg, bands, "stale_data",
                            lambda v, b, r: f"stale data: event-time lag p95 {v:.0f} s (>= {_fmt(b)} s)", extra=extra)

    def _eval_dead_letter_spike(self, stats, cfg, bands) -> list[Breach]:
        extra = {"dlq_by_reason": dict(stats["dlq_by_reason"])} if isinstance(stats.get("dlq_by_reason"), Mapping) else {}
        return self._simple(stats, cfg, bands, "dead_letter_spike",
                            lambda v, b, r: f"dead-letter spike: {self._pct(v)} of events (>= {self._pct(b)})",
                            extra=extra)

    def _eval_score_drift(self, stats, cfg, bands) -> list[Breach]:
        score = {k: v for k, v in stats["score"].items() if k != "bins"} if isinstance(stats.get("score"), Mapping) else {}
        extra = {"score": score} if score else {}
        out = self._simple(stats, cfg, bands, "score_drift",
                           lambda v, b, r: f"score drift: score PSI {v:.3g} (>= {_fmt(b)})", extra=extra)
        rate = self._fraud_rate_breach(stats, cfg, extra)
        if rate is not None and (not out or severity_rank(rate.severity) < severity_rank(out[0].severity)):
            return [rate]   # the worse of the two views of the scores; one breach, one incident
        return out

    def _fraud_rate_breach(self, stats, cfg, extra: dict) -> Breach | None:
        """The share of events scored as fraud against the model's reference share: a fraud wave (or a model
        gone wrong) moves a few percent of the scores, which barely moves the score PSI but multiplies the
        predicted fraud rate. Severity from the ratio, only when the excess is significant (binomial z)."""
        bands = self._fraud_rate_bands
        if bands is None:
            return None
        rate = number(get_path(stats, cfg.get("fraud_rate", "score.predicted_fraud_rate")))
        ref = number(get_path(stats, cfg.get("fraud_rate_reference", "score.reference_fraud_rate")))
        n = number(get_path(stats, cfg.get("fraud_rate_count", "score.count")))
        if rate is None or ref is None or not n or ref <= 0 or n < float(cfg.get("fraud_rate_min_count", 0)):
            return None
        z = (rate - ref) / math.sqrt(ref * (1 - ref) / n) if ref < 1 else 0.0
        if z < float(cfg.get("fraud_rate_min_z", 5.0)):
            return None
        ratio = rate / ref
        sev = bands.classify(ratio)
        if sev is None or not self.opens(sev):
            return None
        evidence = {"statistic": cfg.get("fraud_rate", "score.predicted_fraud_rate"), "value": rate, "reference": ref,
                    "ratio": ratio, "z": z, "count": n, "fraud_rate_bands": dict(bands.bounds), **extra}
        return Breach("score_drift", sev, (), ratio,
                      f"{sev} score drift: predicted fraud rate {self._pct(rate)} is {ratio:.3g}x the reference "
                      f"{self._pct(ref)} (>= {_fmt(bands.bound(sev))}x)", evidence)

    def _eval_concept_drift(self, stats, cfg, bands) -> list[Breach]:
        concept = stats.get("concept")
        if not isinstance(concept, Mapping):
            return []
        flat: dict[str, Any] = {}

        def walk(d: Mapping, prefix: str) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, Mapping):
                    walk(v, key + ".")
                else:
                    flat[key] = v
        walk(concept, "")
        flags = sorted(k for k, v in flat.items() if v is True
                       and any(fnmatch.fnmatch(k, p) for p in cfg.get("flag_patterns", [])))
        drops: dict[str, float] = {}
        direct = number(flat.get("performance_drop"))
        if direct is not None:
            drops["performance"] = direct
        for m in cfg.get("metrics", []):
            cur, ref = number(flat.get(m)), number(flat.get(f"reference_{m}"))
            if cur is not None and ref is not None and ref > 0:
                drops[m] = (ref - cur) / ref
        worst = max(drops.values(), default=None)
        sev = bands.classify(worst)
        if flags:
            sev = most_severe([s for s in (sev, cfg.get("flag_severity", "P3")) if s is not None])
        if sev is None or not self.opens(sev):
            return []
        parts = []
        if flags:
            parts.append("detectors fired: " + ", ".join(flags))
        if worst is not None and bands.classify(worst) is not None:
            parts.append(f"performance down {self._pct(worst)}")
        return [Breach("concept_drift", sev, (), worst, f"{sev} concept drift: " + "; ".join(parts),
                       {"flags": flags, "performance_drop": drops, "bands": dict(bands.bounds)})]

    # -- inhibition --------------------------------------------------------------------------------
    def inhibit(self, breaches: list[Breach], sources: Iterable[Breach] = ()) -> tuple[list[Breach], list[dict]]:
        """Apply the inhibit rules. ``sources``: breaches of firing incidents, besides this window's.

        Returns the surviving breaches (feature_drift ones possibly with fewer features and a recomputed
        severity) and a list of what was muted and why.

        >>> p = Policy.load()
        >>> miss = Breach("missing_data", "P2", ("amount",), 0.2, "")
        >>> drift = p._feature_drift_breach({"amount": {"psi": 0.5, "severity": "P1"},
        ...                                  "hour": {"psi": 0.15, "severity": "P3"}}, p.bands("feature_drift"))
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

    def _without(self, b: Breach, gone: set[str]) -> Breach | None:
        left = [f for f in b.features if f not in gone]
        if not left:
            return None
        if b.type == "feature_drift" and "features" in b.evidence:
            return self._feature_drift_breach({n: b.evidence["features"][n] for n in left}, self.bands(b.type))
        return Breach(b.type, b.severity, tuple(left), b.value, b.summary, b.evidence, b.covers_all)
