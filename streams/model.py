"""The model the worker serves, held in one place for every stage.

:class:`ModelHolder` keeps the current :class:`models.scorer.Scorer` and the reference profile of every
model version this worker has served (compiled once), so the aggregator can merge a window that a model
reload split. :meth:`ModelHolder.reload` swaps the model for all stages at once: each stage that keeps
state for a model subscribes and gets the new scorer (the window stage ships its open windows first, so a
window never mixes two models' reference profiles).

It also holds the **shadow** model (:meth:`ModelHolder.set_shadow`): the model registry's challenger,
which the scoring stage runs on the same accepted rows as the champion (``settings.shadow``), its scores
published on ``scores.shadow`` and routed beside the champion's to the label join; nothing else reads it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from breeboost.logs import log
from streams.records import Record

__all__ = ["ModelHolder"]

_log = logging.getLogger("breeboost.pipeline")

#: A stage's reaction to a new model (called once it is in place): the records to publish before the new
#: model's first batch, e.g. the windows of the old one.
ReloadListener = Callable[[], list[Record]]


class ModelHolder:
    """The current scorer (``scorer``, ``spec``, ``version``, ``threshold``) and the profiles of every
    version served. ``metrics``: a :class:`streams.metrics.WorkerMetrics` (its ``model`` info is set)."""

    def __init__(self, scorer: Any, metrics: Any) -> None:
        from detectors.window import compile_profile

        self._compile = compile_profile
        self.metrics = metrics
        self._profiles: dict[str, tuple[dict, Any]] = {}
        # every profile served, by fingerprint: a re-baselined reference (models.registry) is a new profile
        # of the same version, and partials sketched with the old one may still be on their way
        self._by_fingerprint: dict[str, tuple[dict, Any]] = {}
        self._references: dict[str, dict | None] = {}
        self._listeners: list[ReloadListener] = []
        self.shadow: Any | None = None      # the challenger in shadow (a Scorer), or None
        self._use(scorer)

    def _use(self, scorer: Any) -> None:
        self.scorer = scorer
        self.compiled = self._compile(scorer.profile)   # compiled once: new windows are cheap
        self._profiles[scorer.version] = (scorer.profile, self.compiled)
        self._by_fingerprint[self.compiled.fingerprint] = (scorer.profile, self.compiled)
        metadata = getattr(scorer, "metadata", None) or {}
        self._references[scorer.version] = (metadata.get("metrics") or {}).get("test")
        self.metrics.model.info({"version": scorer.version, "threshold": f"{scorer.threshold:.6g}"})

    @property
    def spec(self) -> Any:
        return self.scorer.spec

    @property
    def version(self) -> str:
        return self.scorer.version

    def reference_performance(self, version: str) -> dict | None:
        """A served version's own figures on its test slice (``metadata.json``): the concept section's
        reference (``None`` if the artifact has none)."""
        return self._references.get(version)

    def knows(self, version: Any) -> bool:
        return version in self._profiles

    def profile(self, version: str) -> tuple[dict, Any]:
        """``(profile dict, compiled profile)`` of a version this worker served."""
        return self._profiles[version]

    def profile_for(self, version: str, fingerprints: list[Any]) -> tuple[dict, Any]:
        """The profile to merge a window's partials of ``version`` with (their sketches' ``fingerprints``):
        the version's current one if any partial has it, else the first one this worker served."""
        current = self._profiles[version]
        if current[1].fingerprint in fingerprints:
            return current
        return next((self._by_fingerprint[f] for f in fingerprints if f in self._by_fingerprint), current)

    def subscribe(self, listener: ReloadListener) -> None:
        self._listeners.append(listener)

    def set_shadow(self, scorer: Any | None) -> None:
        """Score ``scorer`` (the registry's challenger) in shadow from the next batch on; ``None``: stop."""
        if scorer is not None and scorer.version == self.scorer.version:
            scorer = None       # promoted: the champion now
        previous, self.shadow = self.shadow, scorer
        if (previous and previous.version) != (scorer and scorer.version):
            log(_log, "shadow model" if scorer is not None else "shadow scoring stopped",
                version=scorer.version if scorer is not None else None,
                previous=previous.version if previous is not None else None, champion=self.scorer.version)

    def reload(self, scorer: Any) -> list[Record]:
        """Serve ``scorer`` from the next batch on; returns what the stages must publish first."""
        self._use(scorer)
        if self.shadow is not None and self.shadow.version == scorer.version:
            self.set_shadow(None)
        flushed: list[Record] = []
        for listener in self._listeners:
            flushed += listener()
        log(_log, "model reloaded", version=scorer.version)
        return flushed
