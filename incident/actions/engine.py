"""The actions engine: incident events -> the actions the policy maps them to, each run once, never blocking.

The policy's ``[actions.map]`` maps an incident type to actions (default, when the policy has an
``[actions]`` table at all: ``concept_drift = ["retrain", "promote-if-better"]``, ``feature_drift =
["propose-rebaseline"]``); ``[actions] severities`` (default P1, P2) says which severities act, and
``dry_run = true`` records what would be done without doing it. An action starts on an incident's
``fired`` event only (``retrain`` once ``[actions.retrain] labels_after`` labels, default 20,000, were
joined in the windows published after the incident: before that its range holds no rows of the new
pattern), under a deterministic id (:func:`incident.actions.ledger.action_id` of the incident,
the action and ``fired``), so a replayed event or a restarted agent never runs it twice. ``retrain`` and
``promote`` run as child processes (``breeboost model retrain`` / ``promote``, started by the injected
``launcher``) that :meth:`ActionsEngine.poll` checks on the agent's timer: the agent never waits for one.
Each step is an incident update event (``updated``, a ``note`` by ``auto``: what, and the result).
After an automatic promotion, :class:`incident.actions.rollback.RollbackWatch` (``[actions.rollback]``)
compares the new champion's drift windows with the old champion's (:meth:`ActionsEngine.observe_windows`,
fed every ``drift.stats`` record) and runs ``breeboost model rollback --by auto`` if it does worse.

>>> import tempfile, os
>>> from incident.actions.ledger import ActionLedger
>>> class Jobs:
...     def __init__(self): self.started = []
...     def start(self, argv): self.started.append(argv); return argv
...     def poll(self, job): return 0, '{"version": "v2", "comparison": {"rows": 5000, "positives": 50, ' \\
...         '"champion": {"auprc": 0.5, "recall": 0.5}, "challenger": {"auprc": 0.7, "recall": 0.6}}}'
>>> jobs = Jobs()
>>> ledger = ActionLedger(os.path.join(tempfile.mkdtemp(), "a.json"))
>>> policy = {"actions": {"promote": {"auto": True, "evidence": "shadow"}, "retrain": {"labels_after": 5000}}}
>>> engine = ActionsEngine(policy, ledger, jobs, "models")
>>> inc = {"incident_id": "inc-000000000001", "event": "fired", "type": "concept_drift", "severity": "P1",
...        "seq": 1, "notes": []}
>>> [e["notes"][-1]["text"] for e in engine.observe([inc, inc])]    # the same event twice: one retrain
['retrain: waiting for 5000 labels joined after the incident, then the last 8 windows']
>>> window = lambda k, n: {"window": {"index": k}, "model_version": "v1", "concept": {"labelled": n}}
>>> engine.observe_windows([window(4, 3000)])                       # the batch that fired it
[]
>>> [e["notes"][-1]["text"] for e in engine.observe_windows([window(5, 3000), window(6, 3000)])]
['retrain: started (6000 labels joined in 2 windows after the incident)']
>>> [e["notes"][-1]["text"][:60] for e in engine.poll()]      # it passes offline: now the live evidence
['retrain: done (challenger v2)', 'promote-if-better: v2 passes offline (challenger AUPRC 0.7 >']
>>> counts = lambda tp, fn, b: {"n": 1000, "tp": tp, "fn": fn, "fp": 0, "tn": 1000 - tp - fn,
...                             "positive_bins": {b: 25}, "negative_bins": {50: 975}}   # frauds' score bin b
>>> shadow = {"challenger_version": "v2", "champion_counts": counts(5, 20, 40), "challenger_counts": counts(24, 1, 99)}
>>> [e["notes"][-1]["text"][:80] for e in engine.observe_windows([{**window(7, 1000), "shadow": shadow}])]
['promote-if-better: started (v2 passes the guard: in shadow, 1 of 1 windows: chal']
>>> jobs.started[-1][:3]
['model', 'promote', 'v2']
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Mapping, Protocol

import msgspec
import orjson

from incident.actions.ledger import ActionLedger, action_id
from incident.actions.promotion import PromotionGuard, ShadowEvidence
from incident.actions.rollback import Pooled, RollbackWatch
from incident.errors import PolicyError

__all__ = ["ActionsEngine", "Launcher", "ACTIONS", "DEFAULT_MAP"]

ACTIONS = ("notify", "retrain", "promote-if-better", "propose-rebaseline")
DEFAULT_MAP = {"concept_drift": ["retrain", "promote-if-better"], "feature_drift": ["propose-rebaseline"]}


class Launcher(Protocol):
    """Starts ``breeboost ARGV...`` without waiting; ``poll(job)``: ``None`` while it runs, else
    ``(exit code, stdout)``."""

    def start(self, argv: list[str]) -> Any: ...

    def poll(self, job: Any) -> tuple[int, str] | None: ...


class _Waiting:
    """A retrain waiting for labels: the windows published after its incident's (those of the batch that
    fired it do not count) and their joined labels."""

    def __init__(self, incident: dict) -> None:
        self.incident = incident
        self.after: int | None = None    # the newest window of the batch that fired the incident
        self._batch: list[int] = []
        self.windows: set[int] = set()
        self.labelled = 0

    def count(self, index: int, labelled: int) -> int:
        if self.after is None:
            self._batch.append(index)
        elif index > self.after and index not in self.windows:
            self.windows.add(index)
            self.labelled += labelled
        return self.labelled

    def batch_done(self) -> None:
        if self.after is None:
            self.after = max(self._batch, default=-1)


class _ShadowWait(msgspec.Struct):
    """A promotion waiting for shadow evidence: its incident (the latest event seen) and the evidence."""

    incident: dict
    evidence: ShadowEvidence


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class ActionsEngine:
    """``config``: the policy's whole config; ``model_dir``: the registry the actions work on."""

    def __init__(self, config: Mapping[str, Any], ledger: ActionLedger, launcher: Launcher, model_dir: str,
                 retrain_args: tuple[str, ...] = ()) -> None:
        table = dict(config.get("actions") or {})
        self.map = {**DEFAULT_MAP, **dict(table.get("map") or {})}
        for t, acts in self.map.items():
            bad = [a for a in acts if a not in ACTIONS]
            if bad:
                raise PolicyError(f"actions.map.{t}: unknown action(s) {bad}; known: {', '.join(ACTIONS)}")
        self.severities = frozenset(table.get("severities", ["P1", "P2"]))
        self.dry_run = bool(table.get("dry_run", False))
        retrain = dict(table.get("retrain") or {})
        self.windows = int(retrain.get("windows", 8))
        # a retrain started the moment concept drift fires trains on the windows before the shift: the new
        # pattern's labels are not there yet (docs/operations.md). It waits until the windows published
        # after the incident carry this many joined labels; 0: start at once.
        self.labels_after = int(retrain.get("labels_after", 20_000))
        if self.windows < 1 or self.labels_after < 0:
            raise PolicyError(f"actions.retrain: windows must be >= 1 and labels_after >= 0, got "
                              f"{self.windows} and {self.labels_after}")
        self.guard = PromotionGuard.from_policy(config)
        self.ledger, self.launcher, self.model_dir = ledger, launcher, model_dir
        self.retrain_args = tuple(retrain_args)
        self._running: dict[str, tuple[Any, dict, str]] = {}   # action id -> (job, incident event, action)
        self._latest: dict[str, dict] = {}                        # incident id -> its latest event seen
        self.rollback = RollbackWatch.from_policy(config, ledger.path.with_name("rollback-watch.json"))
        # the labelled counts of the last windows of each model version: the old champion's baseline
        self._recent: dict[str, dict[int, Pooled]] = {}
        self._promoting: dict[str, tuple[str, str | None]] = {}   # promote action id -> (version, old champion)
        self._waiting: dict[str, _Waiting] = {}   # retrains waiting for labels after their incident
        # promotions that passed offline, waiting for the live shadow evidence (saved: a restart resumes them)
        self._shadow_path = ledger.path.with_name("shadow-evidence.json")
        self._shadow: dict[str, _ShadowWait] = self._load_shadow()

    # -- incident events in -------------------------------------------------------------------------
    def observe(self, events: list[Mapping[str, Any]]) -> list[dict]:
        """Start the actions of newly fired incidents; returns the update events to publish."""
        out: list[dict] = []
        for ev in events:
            if ev.get("incident_id"):
                self._latest[str(ev["incident_id"])] = dict(ev)   # an update builds on the latest state
            if ev.get("event") != "fired" or ev.get("severity") not in self.severities:
                continue
            for action in self.map.get(str(ev.get("type")), ()):
                if action == "promote-if-better":
                    continue   # follows its retrain (see poll)
                aid = action_id(str(ev["incident_id"]), action, "fired")
                if self.ledger.get(aid) is not None:
                    continue   # replayed, or the agent restarted: done (or interrupted) before
                if aid in self._waiting:
                    continue   # the same fired event again
                busy = [inc for job, inc, act in self._running.values() if act == action == "retrain"]
                busy += [w.incident for w in self._waiting.values()] if action == "retrain" else []
                if busy and not self.dry_run:
                    # one retrain at a time: a second concept_drift incident of the same shift (another
                    # detector's fingerprint) would train the same challenger again and replace the first
                    text = f"not started: the retrain of {busy[0]['incident_id']} is running"
                    self.ledger.start(aid, action, "auto")
                    self.ledger.finish(aid, "done", text)
                    out.append(self._event(dict(ev), aid, f"{action}: {text}"))
                    continue
                if action == "retrain" and self.labels_after and not self.dry_run:
                    self._waiting[aid] = _Waiting(dict(ev))
                    out.append(self._event(dict(ev), aid, f"retrain: waiting for {self.labels_after} labels joined "
                                                          f"after the incident, then the last {self.windows} windows"))
                    continue
                out.append(self._start(aid, action, dict(ev)))
        return out

    def _start(self, aid: str, action: str, incident: dict, argv: list[str] | None = None, why: str = "") -> dict:
        if action == "retrain":
            argv = ["model", "retrain", "--model", self.model_dir, "--windows", str(self.windows), "--json",
                    *self.retrain_args]
        if argv is None or self.dry_run:
            text = (f"would run: breeboost {' '.join(argv)}" if argv and self.dry_run else
                    "notified" if action == "notify" else
                    "proposed: breeboost reference rebaseline --windows A..B once the shift is accepted"
                    if action == "propose-rebaseline" else "nothing to do")
            self.ledger.start(aid, action, "auto")
            self.ledger.finish(aid, "done", text)
            return self._event(incident, aid, f"{action}: {text}")
        self.ledger.start(aid, action, "auto")
        self._running[aid] = (self.launcher.start(argv), incident, action)
        return self._event(incident, aid, f"{action}: started{f' ({why})' if why else ''}")

    # -- jobs -------------------------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Finish the jobs that ended (and start what follows them); returns the update events."""
        out: list[dict] = []
        for aid, (job, incident, action) in list(self._running.items()):
            done = self.launcher.poll(job)
            if done is None:
                continue
            del self._running[aid]
            code, stdout = done
            if code != 0:
                self.ledger.finish(aid, "failed", error=f"exit code {code}")
                out.append(self._event(incident, aid, f"{action}: failed (exit code {code})"))
                continue
            result = self._last_json(stdout)
            self.ledger.finish(aid, "done", result)
            what = f"challenger {result.get('version')}" if action == "retrain" else "done"
            out.append(self._event(incident, aid, f"{action}: done ({what})"))
            if action == "promote-if-better" and aid in self._promoting:
                out.append(self._watch(incident, aid, *self._promoting.pop(aid)))
            if action == "retrain" and "promote-if-better" in self.map.get(str(incident.get("type")), ()):
                out.append(self._promote_if_better(incident, result))
        return [e for e in out if e.get("type") is not None]   # none for an incident not seen since a restart

    def _promote_if_better(self, incident: dict, result: Mapping[str, Any]) -> dict:
        aid = action_id(str(incident["incident_id"]), "promote-if-better", "fired")
        version = str(result.get("version"))
        decision = self.guard.decide(result.get("comparison") or {})
        if decision.promote and self.guard.evidence == "shadow" and not self.dry_run:
            # the offline comparison passed; now the live one: the challenger scored in shadow by the workers
            self._shadow[aid] = _ShadowWait(incident, ShadowEvidence(version))
            self._save_shadow()
            g = self.guard
            return self._event(incident, aid, f"promote-if-better: {version} passes offline ({decision.reason}); "
                                              f"waiting for {g.min_labelled} labelled transactions ({g.min_positives} "
                                              f"frauds) scored by both models in shadow, at most {g.shadow_windows} windows")
        return self._decide(aid, incident, version, decision)

    def _decide(self, aid: str, incident: dict, version: str, decision: Any) -> dict:
        if not decision.promote or not decision.automatic:
            self.ledger.start(aid, "promote-if-better", "auto")
            verdict = "passes" if decision.promote else "does not pass"
            text = (f"{version} {verdict} the guard ({decision.reason})" +
                    ("; confirm with breeboost model promote" if decision.promote else "; not promoted"))
            self.ledger.finish(aid, "done", text)
            return self._event(incident, aid, f"promote-if-better: {text}")
        argv = ["model", "promote", version, "--model", self.model_dir, "--by", "auto", "--reason",
                f"guard passed: {decision.reason}"]
        self._promoting[aid] = (version, self._champion())
        return self._start(aid, "promote-if-better", incident, argv, f"{version} passes the guard: {decision.reason}")

    def _count_shadow(self, stats: Mapping[str, Any]) -> list[dict]:
        """One drift window towards each promotion waiting for shadow evidence; decide those now judged."""
        out = []
        for aid, w in list(self._shadow.items()):
            if self.ledger.get(aid) is not None:   # decided before a restart (the file was saved before it)
                del self._shadow[aid]
                continue
            w.evidence.add(stats)
            ev = w.evidence
            if not self.guard.enough(ev) and ev.windows_seen < self.guard.shadow_windows:
                continue
            del self._shadow[aid]
            self._save_shadow()      # before acting: a crash in between leaves the ledger's record, not a 2nd run
            comparison = ev.comparison()
            decision = self.guard.decide(comparison)
            if decision.promote and self._challenger() not in (ev.challenger, None):
                decision = type(decision)(False, False, f"{ev.challenger} is no longer the registry's challenger")
            where = f"in shadow, {len(ev.windows)} of {ev.windows_seen} windows: "
            decision = type(decision)(decision.promote, decision.automatic, where + decision.reason)
            out.append(self._decide(aid, w.incident, ev.challenger, decision))
        self._save_shadow()      # once a window while any promotion waits: a restart resumes with it
        return out

    def _challenger(self) -> str | None:
        """The registry's challenger ("" when it has none; ``None`` when there is no registry to ask)."""
        from models.registry import Registry

        try:
            state = Registry(self.model_dir).state()
        except Exception:   # noqa: BLE001 - unreadable: the promote command says why, if it fails
            return None
        return (state.challenger or "") if state.versions else None

    def _save_shadow(self) -> None:
        """The promotions waiting for shadow evidence, beside the ledger (write-then-rename): a restarted
        agent resumes them."""
        tmp = self._shadow_path.with_name(self._shadow_path.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(msgspec.json.encode(self._shadow))
        os.replace(tmp, self._shadow_path)

    def _load_shadow(self) -> dict[str, "_ShadowWait"]:
        try:
            return msgspec.json.decode(self._shadow_path.read_bytes(), type=dict[str, _ShadowWait])
        except FileNotFoundError:
            return {}
        except msgspec.DecodeError:
            return {}

    # -- the rollback watch ---------------------------------------------------------------------------
    def _champion(self) -> str | None:
        from models.registry import Registry

        try:
            return Registry(self.model_dir).state().champion
        except Exception:   # no registry (yet): nothing to return to
            return None

    def _watch(self, incident: dict, aid: str, version: str, old: str | None) -> dict:
        """Start watching ``version`` (just promoted over ``old``): the note says on what baseline."""
        recent = self._recent.get(old or "", {})
        baseline = sum(recent.values(), Pooled())
        if not self.rollback.auto or old is None or old == version:
            text = "no rollback watch" + ("" if self.rollback.auto else " ([actions.rollback] auto = false)")
        elif not self.rollback.enough(baseline):
            text = (f"no rollback watch: {old} had {baseline.labelled} labels ({baseline.positives} frauds) in its "
                    f"last {len(recent)} window(s), fewer than {self.rollback.min_labelled} "
                    f"({self.rollback.min_positives}) to compare with")
        else:
            self.rollback.start(str(incident["incident_id"]), version, old, baseline)
            text = (f"rollback watch: {version} against {old}'s last {len(recent)} window(s) (recall "
                    f"{baseline.recall:.3f}, precision {baseline.precision if baseline.precision is None else round(baseline.precision, 3)} "
                    f"on {baseline.labelled} labels), for {self.rollback.windows} window(s) after {self.rollback.settle}")
        return self._event(incident, aid, text)

    def observe_windows(self, values: list[bytes | Mapping[str, Any]]) -> list[dict]:
        """Every ``drift.stats`` record (bytes or decoded): the per-version labelled counts, and the
        rollback watch's verdict (a rollback started, or the new champion kept); the update events."""
        out: list[dict] = []
        for raw in values:
            try:
                stats = orjson.loads(raw) if isinstance(raw, (bytes, bytearray, memoryview, str)) else raw
                index, version = int(stats["window"]["index"]), stats.get("model_version")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            counts = Pooled.of_window(stats)
            if version is not None and counts.labelled:
                recent = self._recent.setdefault(str(version), {})
                recent[index] = counts
                for k in sorted(recent)[:-self.rollback.baseline_windows]:
                    del recent[k]
            verdict = self.rollback.window(index, version, counts)
            if verdict is not None:
                out += self._verdict(verdict)
            out += self._count_labels_after(index, counts.labelled)
            if self._shadow:
                out += self._count_shadow(stats)
        for w in self._waiting.values():
            w.batch_done()
        return out

    def _count_labels_after(self, index: int, labelled: int) -> list[dict]:
        """A window's joined labels towards each waiting retrain; start those that have enough."""
        out = []
        for aid, w in list(self._waiting.items()):
            if w.count(index, labelled) >= self.labels_after:
                del self._waiting[aid]
                out.append(self._start(aid, "retrain", w.incident,
                                       why=f"{w.labelled} labels joined in {len(w.windows)} windows after the incident"))
        return out

    def _verdict(self, v: Any) -> list[dict]:
        # the incident's latest state (after an agent restart the engine may not have seen it again: then the
        # rollback still runs, recorded in the ledger and the registry's history, without an incident note)
        incident = self._latest.get(v.incident_id)
        aid = action_id(v.incident_id, "rollback", "fired")
        events: list[dict] = []
        if v.verdict != "worse":
            note = f"rollback watch: {v.version} kept ({v.reason})"
        elif self.ledger.get(aid) is not None:
            return []
        elif self._champion() != v.version:
            self.ledger.start(aid, "rollback", "auto")
            note = f"rollback: {v.version} did worse ({v.reason}) but is no longer the champion: not rolled back"
            self.ledger.finish(aid, "done", note)
        else:
            argv = ["model", "rollback", "--model", self.model_dir, "--by", "auto", "--reason",
                    f"{v.version} did worse than {v.old}: {v.reason}"]
            ev = self._start(aid, "rollback", incident or {"incident_id": v.incident_id}, argv,
                             f"{v.version} did worse than {v.old}: {v.reason}")
            return [ev] if incident is not None else []
        if incident is not None:
            events.append(self._event(incident, aid, note))
        return events

    @staticmethod
    def _last_json(stdout: str) -> dict:
        for line in reversed(stdout.strip().splitlines()):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                return doc
        return {}

    def _event(self, incident: Mapping[str, Any], aid: str, text: str) -> dict:
        """An ``updated`` incident event carrying the action's note, on the incident's latest state (id:
        deterministic per step)."""
        now = time.time()
        incident = self._latest.get(str(incident["incident_id"]), incident)
        ev = dict(incident)
        ev["notes"] = list(incident.get("notes", [])) + [{"at": _iso(now), "action": "note", "author": "auto",
                                                          "text": text}]
        ev["event"], ev["updated_at"], ev["source"] = "updated", _iso(now), "agent"
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        ev["event_id"] = f"{incident['incident_id']}:{incident.get('seq')}:{aid}-{digest}"
        self._latest[str(incident["incident_id"])] = ev
        return ev
