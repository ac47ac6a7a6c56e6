"""Drift and bad-input scenarios: what they change, when, and the incident each should cause downstream.

A scenario acts through up to four hooks, so each one says exactly what it changes:

* generation-time (``type_shares``, ``fraud_factor``): the generator draws types or fraud take-overs with
  other parameters, from the same random numbers (everything else about a row stays as it was);
* columnar (``transform``): values of the generated columns change after generation;
* clock (``clock_lag``): event time lags behind, in files and in live publishing;
* encode-time (``edit_event``): the JSON of single events changes (keys missing, renamed, wrongly typed,
  or the payload is not JSON at all).

Which events a scenario touches (its ``fraction``) and how (which field, which kind) are decided by a hash
of ``(seed, scenario, event index)``, so results do not depend on how the stream is cut into batches.

>>> s = parse_scenario("amount_scale:factor=2")
>>> s.scenario.factor, s.start, s.end
(2.0, 0, None)
>>> parse_scenario("fraud_burst:factor=10", start=1000, end=2000).active(np.array([999, 1000, 1999, 2000]))
array([False,  True,  True, False])
>>> parse_scenario("warp_drive")
Traceback (most recent call last):
...
simulator.errors.ScenarioError: unknown scenario 'warp_drive'; choose one of amount_scale, balance_corruption, concept_shift, fraud_burst, malformed, missing_fields, schema_break, stale_clock, type_mix
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import orjson

from simulator.errors import ScenarioError
from simulator.paysim import TYPES

__all__ = [
    "ScenarioError", "Scenario", "ScheduledScenario", "parse_scenario", "schedule", "hash_uniform",
    "AmountScale", "TypeMix", "MissingFields", "SchemaBreak", "StaleClock", "FraudBurst",
    "BalanceCorruption", "ConceptShift", "Malformed", "SCENARIOS", "JSON_FIELDS", "NUMERIC_FIELDS",
]

#: Keys of a published transaction, in order (``isFraud`` only in files).
JSON_FIELDS: tuple[str, ...] = (
    "transaction_id", "step", "type", "amount", "nameOrig", "oldbalanceOrg", "newbalanceOrig", "nameDest",
    "oldbalanceDest", "newbalanceDest", "isFraud", "isFlaggedFraud", "event_time")
NUMERIC_FIELDS: tuple[str, ...] = ("step", "amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest",
                                   "newbalanceDest", "isFlaggedFraud", "event_time")
_BALANCES = ("oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest")
_MASK64 = (1 << 64) - 1


def hash_uniform(seed: int, salt: int, index: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1) that depend only on ``(seed, salt, index)`` (SplitMix64 finaliser).

    >>> u = hash_uniform(7, 1, np.arange(5))
    >>> bool(((u >= 0) & (u < 1)).all()), bool((hash_uniform(7, 1, np.arange(2, 4)) == u[2:4]).all())
    (True, True)
    """
    x = np.asarray(index, dtype=np.int64).astype(np.uint64)
    x = x + np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & _MASK64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def _float(params: dict[str, str], name: str, scenario: str, default: float | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
    raw = params.pop(name, None)
    if raw is None:
        if default is None:
            raise ScenarioError(f"{scenario}: parameter {name!r} is required, e.g. {scenario}:{name}=...")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ScenarioError(f"{scenario}: {name} must be a number, got {raw!r}") from None
    if not np.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and value > high):
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
        raise ScenarioError(f"{scenario}: {name} must be in {rng}, got {raw!r}")
    return value


def _choices(params: dict[str, str], name: str, scenario: str, allowed: Sequence[str],
             default: Sequence[str]) -> tuple[str, ...]:
    raw = params.pop(name, None)
    if raw is None:
        return tuple(default)
    values = tuple(v.strip() for v in raw.split("|") if v.strip())
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise ScenarioError(f"{scenario}: {name} must be one or more of {'|'.join(allowed)} "
                            f"separated by '|', got {raw!r}")
    return values


class Scenario:
    """Base class: every hook is a no-op; subclasses override the ones they need."""

    name: ClassVar[str] = ""
    #: True when the scenario edits the JSON of single events (files must then be JSON lines).
    encodes: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """The scenario's parameters, for summaries and logs."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def type_shares(self) -> dict[str, float] | None:
        """Type shares to draw from while active (None: PaySim's)."""
        return None

    def fraud_factor(self) -> float:
        """Multiplier of the rate of fraudulent account take-overs while active."""
        return 1.0

    def clock_lag(self) -> float:
        """Seconds by which event time lags behind while active."""
        return 0.0

    def transform(self, columns: dict[str, np.ndarray], rows: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Change generated ``columns`` in place at positions ``rows`` (``u``, ``v``: per-row uniforms)."""

    def edit_event(self, event: dict[str, Any], u: float, v: float) -> dict[str, Any] | bytes | None:
        """Encode-time edit of one event; None leaves it alone, bytes replace the whole payload."""
        return None


class AmountScale(Scenario):
    """``amount_scale:factor=F[,balances=1]``: every amount is multiplied by F (a units or currency bug).

    Balances stay as they were unless ``balances=1`` (then they scale too, so bookkeeping still adds up).
    Incident: drift on ``amount`` (and on the balance-error features derived from it).
    """

    name = "amount_scale"

    def __init__(self, factor: float = 10.0, balances: bool = False) -> None:
        if not np.isfinite(factor) or factor <= 0:
            raise ScenarioError(f"amount_scale: factor must be > 0, got {factor!r}")
        self.factor = float(factor)
        self.balances = bool(balances)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "AmountScale":
        return cls(_float(p, "factor", cls.name, 10.0, 0.0, low_open=True),
                   bool(_float(p, "balances", cls.name, 0.0, 0.0, 1.0)))

    def transform(self, columns, rows, u, v) -> None:
        names = ("amount",) + (_BALANCES if self.balances else ())
        for name in names:
            columns[name][rows] = np.round(columns[name][rows] * self.factor, 2)


class TypeMix(Scenario):
    """``type_mix:TRANSFER=0.5,CASH_OUT=0.3``: the genuine traffic follows other type shares.

    Types not named keep PaySim's share; the shares are then renormalised. Amounts and balances follow
    each row's new type (fraud take-overs are unchanged). Incident: drift on ``type``.
    """

    name = "type_mix"

    def __init__(self, shares: dict[str, float]) -> None:
        from simulator.paysim import TYPE_SHARES

        bad = [t for t in shares if t not in TYPES]
        if bad:
            raise ScenarioError(f"type_mix: unknown type {bad[0]!r}; choose from {', '.join(TYPES)}")
        if any(not np.isfinite(s) or s < 0 for s in shares.values()):
            raise ScenarioError(f"type_mix: shares must be >= 0, got {shares!r}")
        merged = {**TYPE_SHARES, **{t: float(s) for t, s in shares.items()}}
        total = sum(merged.values())
        if total <= 0:
            raise ScenarioError("type_mix: the shares must not all be 0")
        self.shares = {t: merged[t] / total for t in TYPES}

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "TypeMix":
        if not p:
            raise ScenarioError("type_mix: give at least one share, e.g. type_mix:TRANSFER=0.5")
        shares = {}
        for t in list(p):
            shares[t] = _float(p, t, cls.name, None, 0.0)
        return cls(shares)

    def type_shares(self) -> dict[str, float]:
        return self.shares


class MissingFields(Scenario):
    """``missing_fields:fraction=0.2[,fields=amount|oldbalanceOrg]``: a fraction of events lose one field.

    Half of the touched events lack the key, the other half carry ``null``. ``transaction_id`` is never
    touched. Incident: missing-data incident (missing ratio up on the named fields).
    """

    name = "missing_fields"
    encodes = True
    allowed = tuple(f for f in JSON_FIELDS if f not in ("transaction_id", "isFraud"))

    def __init__(self, fraction: float = 0.2, fields: Sequence[str] = ("amount",)) -> None:
        if not 0 < fraction <= 1:
            raise ScenarioError(f"missing_fields: fraction must be in (0, 1], got {fraction!r}")
        bad = [f for f in fields if f not in self.allowed]
        if not fields or bad:
            raise ScenarioError(f"missing_fields: fields must be among {'|'.join(self.allowed)}, got {fields!r}")
        self.fraction = float(fraction)
        self.fields = tuple(fields)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "MissingFields":
        return cls(_float(p, "fraction", cls.name, 0.2, 0.0, 1.0, low_open=True),
                   _choices(p, "fields", cls.name, cls.allowed, ("amount",)))

    def edit_event(self, event, u, v):
        if u >= self.fraction:
            return None
        k = min(int(v * 2 * len(self.fields)), 2 * len(self.fields) - 1)
        field = self.fields[k // 2]
        if k % 2:
            event[field] = None
        else:
            event.pop(field, None)
        return event


class SchemaBreak(Scenario):
    """``schema_break:field=amount,mode=rename|string[,to=NAME][,fraction=1]``: a producer-side schema change.

    ``rename`` moves the value to key ``to`` (default ``<field>_v2``); ``string`` sends a numeric field as a
    JSON string (``"181.0"``). Incident: schema mismatch, P1.
    """

    name = "schema_break"
    encodes = True

    def __init__(self, field: str = "amount", mode: str = "rename", to: str | None = None,
                 fraction: float = 1.0) -> None:
        if field not in MissingFields.allowed:
            raise ScenarioError(f"schema_break: field must be one of {'|'.join(MissingFields.allowed)}, got {field!r}")
        if mode not in ("rename", "string"):
            raise ScenarioError(f"schema_break: mode must be rename or string, got {mode!r}")
        if mode == "string" and field not in NUMERIC_FIELDS:
            raise ScenarioError(f"schema_break: mode=string needs a numeric field ({'|'.join(NUMERIC_FIELDS)}), "
                                f"got {field!r}")
        if not 0 < fraction <= 1:
            raise ScenarioError(f"schema_break: fraction must be in (0, 1], got {fraction!r}")
        self.field, self.mode, self.fraction = field, mode, float(fraction)
        self.to = to or f"{field}_v2"
        if self.to in JSON_FIELDS:
            raise ScenarioError(f"schema_break: to must not be an existing field, got {self.to!r}")

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "SchemaBreak":
        return cls(p.pop("field", "amount"), p.pop("mode", "rename"), p.pop("to", None),
                   _float(p, "fraction", cls.name, 1.0, 0.0, 1.0, low_open=True))

    def edit_event(self, event, u, v):
        if u >= self.fraction or self.field not in event:
            return None
        if self.mode == "rename":
            event[self.to] = event.pop(self.field)
        elif event[self.field] is not None:
            event[self.field] = str(event[self.field])
        return event


class StaleClock(Scenario):
    """``stale_clock:lag=3600``: event time lags ``lag`` seconds behind (a stuck or replaying upstream).

    In files event time moves back by ``lag``; when publishing live, events are stamped ``now - lag``.
    Incident: stale data (freshness lag p50/p95 up).
    """

    name = "stale_clock"

    def __init__(self, lag: float = 3600.0) -> None:
        if not np.isfinite(lag) or lag <= 0:
            raise ScenarioError(f"stale_clock: lag must be > 0 seconds, got {lag!r}")
        self.lag = float(lag)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "StaleClock":
        return cls(_float(p, "lag", cls.name, 3600.0, 0.0, low_open=True))

    def clock_lag(self) -> float:
        return self.lag


class FraudBurst(Scenario):
    """``fraud_burst:factor=10``: account take-overs happen ``factor`` times as often (a fraud ring).

    The extra take-overs follow PaySim's pattern (TRANSFERs to a mule, then CASH_OUTs) and replace genuine
    rows; every take-over of the baseline stays. Saturates at one take-over per 16 events (factor ~ 100).
    Incident: score drift and a higher predicted fraud rate (concept drift once labels arrive).
    """

    name = "fraud_burst"

    def __init__(self, factor: float = 10.0) -> None:
        if not np.isfinite(factor) or factor < 1:
            raise ScenarioError(f"fraud_burst: factor must be >= 1, got {factor!r}")
        self.factor = float(factor)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "FraudBurst":
        return cls(_float(p, "factor", cls.name, 10.0, 1.0))

    def fraud_factor(self) -> float:
        return self.factor


class BalanceCorruption(Scenario):
    """``balance_corruption:fraction=0.3``: balances no longer add up (a ledger bug upstream).

    In a touched event the origin's new balance moves the wrong way by 0.5-2x the amount
    (``newbalanceOrig = oldbalanceOrg + r*amount`` for outgoing types, ``max(old - r*amount, 0)`` for
    CASH_IN) and, for customer destinations, ``newbalanceDest = max(oldbalanceDest - r*amount, 0)``.
    Merchants keep zero balances. Incident: corrupted balances, P1.
    """

    name = "balance_corruption"

    def __init__(self, fraction: float = 0.3) -> None:
        if not 0 < fraction <= 1:
            raise ScenarioError(f"balance_corruption: fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "BalanceCorruption":
        return cls(_float(p, "fraction", cls.name, 0.3, 0.0, 1.0, low_open=True))

    def transform(self, columns, rows, u, v) -> None:
        rows = rows[u < self.fraction]
        r = 0.5 + 1.5 * v[u < self.fraction]
        amount = columns["amount"][rows]
        old = columns["oldbalanceOrg"][rows]
        cash_in = columns["type"][rows] == "CASH_IN"
        columns["newbalanceOrig"][rows] = np.round(
            np.where(cash_in, np.maximum(old - r * amount, 0.0), old + r * amount), 2)
        customer = np.char.startswith(columns["nameDest"][rows], "C")
        dest_rows = rows[customer]
        columns["newbalanceDest"][dest_rows] = np.round(
            np.maximum(columns["oldbalanceDest"][dest_rows] - r[customer] * amount[customer], 0.0), 2)


class ConceptShift(Scenario):
    """``concept_shift[:share=1][,type=PAYMENT][,min_amount=5000][,max_amount=7000][,signature=none]``: a
    fraud pattern the model was never trained on, that a retrained model can learn.

    The default: a ring testing stolen cards with payments of one size. Every genuine ``PAYMENT`` with
    ``5000 <= amount < 7000`` (a ``share`` of them, default all: ~3.7% of events) is labelled fraud; every
    feature stays as it was. Why this band: the training data has no ``PAYMENT`` fraud at all (fraud is
    ``TRANSFER``/``CASH_OUT`` only), so the champion scores them low and misses them (its recall on the
    shifted stream ~0.02-0.06), while type and amount are features the spec already has, so a model
    retrained on the labelled stream learns them (AUPRC 0.999, recall 0.98 on the newest labelled rows:
    bench/concept_shift_learnable.py with the default). Nothing the model sees moves: no feature or score
    drift, only the labels tell. Incident: concept drift, once the labels of a few windows are joined; the
    loop of #18 (retrain, guarded promotion) can bring recall back.

    Another signature: give any of ``type``, ``min_amount``, ``max_amount`` and the signature is exactly
    those (the others unbounded), e.g. ``concept_shift:type=DEBIT``.

    ``signature=none``: first-party fraud that looks like genuine traffic: a ``share`` (default 0.02) of all
    genuine events is labelled fraud, independent of every feature. No model can learn it (ROC AUC 0.51:
    bench/concept_shift_learnable.py), so retraining cannot bring recall back; it tests the detectors only.
    """

    name = "concept_shift"
    #: the default signature (type, min_amount, max_amount)
    default_signature = ("PAYMENT", 5000.0, 7000.0)

    def __init__(self, share: float = 1.0, type: str | None = default_signature[0],
                 min_amount: float | None = default_signature[1],
                 max_amount: float | None = default_signature[2]) -> None:
        if not 0 < share <= 1:
            raise ScenarioError(f"concept_shift: share must be in (0, 1], got {share!r}")
        if min_amount is not None and max_amount is not None and max_amount <= min_amount:
            raise ScenarioError(f"concept_shift: max_amount ({max_amount}) must be above min_amount ({min_amount})")
        self.share, self.type = float(share), type
        self.min_amount, self.max_amount = min_amount, max_amount

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "ConceptShift":
        signature = p.pop("signature", None)
        if signature not in (None, "none"):
            raise ScenarioError(f"concept_shift: signature can only be 'none' (no feature signature), got "
                                f"{signature!r}; give type/min_amount/max_amount for another signature")
        given = {"type", "min_amount", "max_amount"} & set(p)
        if signature == "none":
            if given:
                raise ScenarioError(f"concept_shift: signature=none takes no {', '.join(sorted(given))}")
            return cls(_float(p, "share", cls.name, 0.02, 0.0, 1.0, low_open=True), None, None, None)
        share = _float(p, "share", cls.name, 1.0, 0.0, 1.0, low_open=True)
        if not given:
            return cls(share)
        type_ = p.pop("type", None)
        lo = _float(p, "min_amount", cls.name, float("nan"), 0.0) if "min_amount" in p else None
        hi = _float(p, "max_amount", cls.name, float("nan"), 0.0) if "max_amount" in p else None
        return cls(share, type_, lo, hi)

    def transform(self, columns, rows, u, v) -> None:
        keep = (u < self.share) & (columns["isFraud"][rows] == 0)
        if self.type is not None:
            keep &= columns["type"][rows] == self.type
        if self.min_amount is not None:
            keep &= columns["amount"][rows] >= self.min_amount
        if self.max_amount is not None:
            keep &= columns["amount"][rows] < self.max_amount
        columns["isFraud"][rows[keep]] = 1


class Malformed(Scenario):
    """``malformed:fraction=0.05[,kinds=binary|truncated|oversized][,size=1010000]``: broken payloads.

    ``binary``: 64-512 random bytes starting with 0xFF (never UTF-8, never JSON); ``truncated``: the
    event's JSON cut short; ``oversized``: valid JSON padded to ``size`` bytes (default 1,010,000, above
    Settings.max_message_bytes = 1,000,000 and below Kafka's default 1 MiB message limit).
    Binary and truncated payloads carry no readable ``transaction_id``: downstream can account for them
    only by topic/partition/offset (the Kafka key is still ``nameOrig``). Incident: dead-letter spike.
    """

    name = "malformed"
    encodes = True
    all_kinds = ("binary", "truncated", "oversized")

    def __init__(self, fraction: float = 0.05, kinds: Sequence[str] = all_kinds, size: int = 1_010_000) -> None:
        if not 0 < fraction <= 1:
            raise ScenarioError(f"malformed: fraction must be in (0, 1], got {fraction!r}")
        bad = [k for k in kinds if k not in self.all_kinds]
        if not kinds or bad:
            raise ScenarioError(f"malformed: kinds must be among {'|'.join(self.all_kinds)}, got {kinds!r}")
        if size < 1024:
            raise ScenarioError(f"malformed: size must be >= 1024 bytes, got {size!r}")
        self.fraction, self.kinds, self.size = float(fraction), tuple(kinds), int(size)

    @classmethod
    def from_params(cls, p: dict[str, str]) -> "Malformed":
        return cls(_float(p, "fraction", cls.name, 0.05, 0.0, 1.0, low_open=True),
                   _choices(p, "kinds", cls.name, cls.all_kinds, cls.all_kinds),
                   int(_float(p, "size", cls.name, 1_010_000, 1024)))

    def edit_event(self, event, u, v):
        if u >= self.fraction:
            return None
        kind = self.kinds[min(int(v * len(self.kinds)), len(self.kinds) - 1)]
        frac = v * len(self.kinds) % 1.0  # a second uniform from the fractional part
        if kind == "binary":
            rng = np.random.default_rng(int(v * 2 ** 53))
            return b"\xff" + rng.bytes(63 + int(frac * 449))
        if kind == "truncated":
            raw = orjson.dumps(event)
            return raw[:max(1, int(len(raw) * (0.1 + 0.8 * frac)))]
        raw_len = len(orjson.dumps(event))
        event["padding"] = "x" * max(0, self.size - raw_len - len(',"padding":""'))
        return event


SCENARIOS: dict[str, type[Scenario]] = {c.name: c for c in (
    AmountScale, TypeMix, MissingFields, SchemaBreak, StaleClock, FraudBurst, BalanceCorruption, ConceptShift,
    Malformed)}


@dataclass(frozen=True)
class ScheduledScenario:
    """A scenario active on event indices ``start <= i < end`` (``end=None``: for ever)."""

    scenario: Scenario
    start: int = 0
    end: int | None = None
    salt: int = 0

    def __post_init__(self) -> None:
        if self.start < 0:
            raise ScenarioError(f"{self.scenario.name}: start must be >= 0, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise ScenarioError(f"{self.scenario.name}: end ({self.end}) must be after start ({self.start})")

    def active(self, index: np.ndarray) -> np.ndarray:
        """Which of the event indices the scenario touches."""
        index = np.asarray(index)
        mask = index >= self.start
        if self.end is not None:
            mask &= index < self.end
        return mask

    def overlaps(self, lo: int, hi: int) -> bool:
        return hi > self.start and (self.end is None or lo < self.end)

    def uniforms(self, seed: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two independent per-event uniforms (selection and choice) for this scheduled scenario."""
        return hash_uniform(seed, 2 * self.salt + 1, index), hash_uniform(seed, 2 * self.salt + 2, index)

    def describe(self) -> dict[str, Any]:
        return {"name": self.scenario.name, "start": self.start, "end": self.end, **self.scenario.params()}


def parse_scenario(spec: str, start: int = 0, end: int | None = None, position: int = 0) -> ScheduledScenario:
    """Parse ``NAME[:k=v,...]`` into a scheduled scenario (``position`` keeps repeated names independent)."""
    name, _, rest = spec.strip().partition(":")
    cls = SCENARIOS.get(name.strip())
    if cls is None:
        raise ScenarioError(f"unknown scenario {name.strip()!r}; choose one of {', '.join(sorted(SCENARIOS))}")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ScenarioError(f"{name}: expected key=value, got {item!r}")
        params[key.strip()] = value.strip()
    scenario = cls.from_params(params)  # type: ignore[attr-defined]
    if params:
        raise ScenarioError(f"{name}: unknown parameter(s) {', '.join(sorted(params))}")
    salt = zlib.crc32(f"{name}/{position}".encode())
    return ScheduledScenario(scenario, int(start), None if end is None else int(end), salt)


def schedule(scenarios: Sequence[ScheduledScenario | str] = ()) -> tuple[ScheduledScenario, ...]:
    """Normalise a mix of scheduled scenarios and ``NAME[:k=v]`` strings (strings start at index 0)."""
    out = []
    for i, s in enumerate(scenarios):
        out.append(parse_scenario(s, position=i) if isinstance(s, str) else s)
        if not isinstance(out[-1], ScheduledScenario):
            raise ScenarioError(f"expected a ScheduledScenario or a 'name:k=v' string, got {s!r}")
    return tuple(out)
