"""``corrupted_balances``: balances stop adding up (``balance_error_ratio``) above their normal level.

PaySim rows do not add up by nature (about 48% of calm simulator events fail the streams' balance check),
so the bands apply to the excess over a reference: the first ``reference`` path present in the payload,
else the level the incident manager learns (:attr:`ScalarRule.learning`). ``min_z`` demands that the
excess be significant for the window's size (``count`` events).

>>> rule = CorruptedBalances({"statistic": "balance_error_ratio", "bands": {"P1": 0.03}, "min_z": 5.0,
...                           "reference": ["reference.balance_error_ratio"], "count": "window.scored"})
>>> calm = {"balance_error_ratio": 0.49, "reference": {"balance_error_ratio": 0.486}, "window": {"scored": 10000}}
>>> rule.evaluate(calm), [b.severity for b in rule.evaluate({**calm, "balance_error_ratio": 0.55})]
([], ['P1'])
"""
from __future__ import annotations

from typing import Any, Mapping

from incident.rules.base import ScalarRule
from incident.rules.core import Breach, percent, share

__all__ = ["CorruptedBalances"]


class CorruptedBalances(ScalarRule):
    """Excess of the balance-error rate over its reference; the incident covers the balance features."""

    name = "corrupted_balances"
    anchor = "corrupted-balances"

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        return self.scalar_breach(stats, lambda v, b, r: f"balances do not add up in {share(v)} of events "
                                                         f"(reference {share(r)}, excess >= {share(b)})",
                                  features=self.list_option("features"))

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        d = incident.get("details") or {}
        ref = (d.get("evidence") or {}).get("reference")
        return (f"Balances do not add up in {percent(d.get('value'))} of events (reference {percent(ref)}): "
                "a ledger or bookkeeping bug upstream (double-applied or one-sided updates).")
