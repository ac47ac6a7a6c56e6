"""Prometheus: alert rules checked and unit-tested by promtool, the compose scrape config checked, and a real
Prometheus server (tests/prom.py) scraping a prometheus_client endpoint that serves the project's metric
names, loading the alert rules and accepting every PromQL expression of the Grafana dashboard."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.prom import PrometheusError, PrometheusServer, prometheus_binary, scrape_and_query

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "prometheus" / "alerts.test.yml"
PROM_CONFIG = ROOT / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "breeboost.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`)")
needs_prometheus = pytest.mark.skipif(prometheus_binary() is None,
                                      reason="prometheus not installed (Debian package `prometheus`)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


# --- promtool ----------------------------------------------------------------------------------------
@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_unit_tests_of_alert_rules_pass():
    r = promtool("test", "rules", str(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_compose_config_and_its_rules():
    r = promtool("check", "config", str(PROM_CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout


@needs_promtool
def test_promtool_unit_tests_fail_when_a_rule_changes(tmp_path):
    """The unit tests are sensitive: raising the dead-letter threshold to 10% breaks them."""
    mutated = ALERTS.read_text().replace("> 0.05", "> 0.10")
    assert mutated != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(mutated)
    shutil.copy(ALERT_TESTS, tmp_path / "alerts.test.yml")
    r = promtool("test", "rules", str(tmp_path / "alerts.test.yml"))
    assert r.returncode != 0 and "BreeBoostDeadLetterRateHigh" in r.stdout + r.stderr


# --- the rules themselves ----------------------------------------------------------------------------
def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


REQUIRED_ALERTS = {"BreeBoostThroughputStalled", "BreeBoostDeadLetterRateHigh", "BreeBoostScoringLatencyHigh",
                   "BreeBoostFeatureDrift", "BreeBoostConsumerErrors"}


def test_alerts_cover_the_issue_and_carry_severity_and_runbook():
    rules = _rules()
    names = {r["alert"] for r in rules}
    assert REQUIRED_ALERTS <= names
    for r in rules:
        assert re.fullmatch(r"P[1-4]", r["labels"]["severity"]), r["alert"]
        assert r["annotations"]["runbook_url"].startswith("incident/playbook.md"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def _playbook_anchors() -> set[str] | None:
    """Section anchors of incident/playbook.md (explicit ids and GitHub heading slugs), else the anchors the
    incident policy points its runbook links at (incident/policy.toml), else ``None``."""
    playbook = ROOT / "incident" / "playbook.md"
    if playbook.exists():
        text = playbook.read_text()
        slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                 for h in re.findall(r"^#+\s+(.+)$", text, flags=re.M)}
        return slugs | set(re.findall(r"""(?:id=["']|\{#)([\w-]+)""", text))
    policy = ROOT / "incident" / "policy.toml"
    if policy.exists():
        import tomllib
        return {t["anchor"] for t in tomllib.loads(policy.read_text()).get("types", {}).values() if "anchor" in t}
    return None


def test_runbook_anchors_are_playbook_sections():
    urls = {r["alert"]: r["annotations"]["runbook_url"] for r in _rules()}
    assert all("#" in u for u in urls.values()), "every runbook link names a section"
    anchors = {u.partition("#")[2] for u in urls.values()}
    known = _playbook_anchors()
    if known is None:
        pytest.skip("neither incident/playbook.md nor incident/policy.toml exists yet")
    assert anchors <= known, f"no playbook section for: {sorted(anchors - known)}"
    # Drift alerts point at the same section as the incident type the agent opens for them.
    assert urls["BreeBoostFeatureDrift"].endswith("#feature-drift")
    assert urls["BreeBoostScoreDrift"].endswith("#score-drift")
    assert urls["BreeBoostDeadLetterRateHigh"].endswith("#dead-letter-spike")


# --- a real Prometheus -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def metrics_endpoint():
    """A prometheus_client endpoint on loopback serving a few of the worker's series."""
    registry = CollectorRegistry()
    events = Counter("breeboost_events", "Transactions processed, by outcome", ["outcome"], registry=registry)
    latency = Histogram("breeboost_event_latency_seconds", "Produce to score", registry=registry,
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0))
    psi = Gauge("breeboost_feature_psi", "PSI per feature", ["feature"], registry=registry)
    threshold = Gauge("breeboost_drift_threshold_psi", "PSI threshold", registry=registry)
    events.labels("scored").inc(990)
    events.labels("dead_lettered").inc(10)
    for v in [0.02] * 90 + [0.2] * 10:
        latency.observe(v)
    psi.labels("amount").set(0.31)
    psi.labels("type").set(0.02)
    threshold.set(0.2)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@needs_prometheus
@pytest.mark.timeout(90)
def test_scrape_and_query_reads_the_series_back(metrics_endpoint):
    queries = ['breeboost_events_total{outcome="scored"}',
               'sum(breeboost_events_total{outcome="dead_lettered"}) / sum(breeboost_events_total)',
               "histogram_quantile(0.99, sum by (le) (breeboost_event_latency_seconds_bucket))",
               "breeboost_feature_psi > on (job, instance) group_left () breeboost_drift_threshold_psi",
               'up{job="breeboost"}']
    r = scrape_and_query(metrics_endpoint, queries, timeout=45)
    assert float(r[queries[0]][0]["value"][1]) == 990
    assert r[queries[0]][0]["metric"]["instance"] == metrics_endpoint
    assert float(r[queries[1]][0]["value"][1]) == pytest.approx(0.01)
    assert 0.1 < float(r[queries[2]][0]["value"][1]) <= 0.25
    # The drift comparison the alert rule makes: only the feature above the exported threshold.
    assert [s["metric"]["feature"] for s in r[queries[3]]] == ["amount"]
    assert float(r[queries[4]][0]["value"][1]) == 1


@needs_prometheus
@pytest.mark.timeout(60)
def test_scrape_and_query_times_out_naming_the_empty_query(metrics_endpoint):
    with pytest.raises(PrometheusError, match="breeboost_no_such_metric"):
        scrape_and_query(metrics_endpoint, ["breeboost_no_such_metric"], timeout=3)


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


@needs_prometheus
@pytest.mark.timeout(90)
def test_real_prometheus_loads_the_rules_and_accepts_every_dashboard_query(metrics_endpoint):
    with PrometheusServer([metrics_endpoint], rule_files=[ALERTS]) as prom:
        rules = prom.rules()
        assert {r["name"] for r in rules} == {r["alert"] for r in _rules()}
        assert all(r["health"] in ("ok", "unknown") for r in rules), rules
        prom.wait_for("breeboost_events_total", timeout=30)
        with pytest.raises(PrometheusError, match="bad_data"):
            prom.query("sum(rate(breeboost_events_total[5m])")
        for expr in _dashboard_exprs():
            # Grafana substitutes $__rate_interval (>= 4 scrape intervals); a bad expression raises here.
            prom.query(expr.replace("$__rate_interval", "20s"))
        # Rules are evaluated every second here: within a few rounds every rule must have run cleanly.
        deadline = time.monotonic() + 20
        while not all(r["health"] == "ok" for r in prom.rules()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(r["health"] == "ok" for r in prom.rules()), prom.rules()


def _touch_every_series(owner) -> int:
    """Give every metric object held by ``owner`` (a WorkerMetrics/IncidentMetrics) one sample."""
    from prometheus_client import Info
    from prometheus_client.metrics import MetricWrapperBase

    n = 0
    for metric in vars(owner).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        if isinstance(metric, Info):
            metric.info({"version": "test"})
        else:
            child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
            for verb in ("inc", "set", "observe"):
                if hasattr(child, verb):
                    getattr(child, verb)(1)
                    break
        n += 1
    return n


@needs_prometheus
@pytest.mark.timeout(90)
def test_every_catalogued_series_reaches_prometheus_under_its_catalogue_name():
    """The real metric classes of the worker and the incident agent, scraped by a real Prometheus: each
    name of docs/metrics.md is a series Prometheus stores (histograms as `_count`)."""
    worker_metrics = pytest.importorskip("streams.metrics")
    incident_metrics = pytest.importorskip("incident.metrics")
    from tests.test_ops_catalogue import catalogue

    registry = CollectorRegistry()
    touched = _touch_every_series(worker_metrics.WorkerMetrics(registry))
    touched += _touch_every_series(incident_metrics.IncidentMetrics(registry))
    from streams.aggregation import AttributionGauges   # registered by the aggregator at its first attribution

    touched += _touch_every_series(AttributionGauges.of(registry))
    cat = catalogue()
    assert touched == len(cat)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        queries = {name: name + "_count" if row["type"] == "histogram" else name for name, row in cat.items()}
        scrape_and_query(f"127.0.0.1:{server.server_port}", list(queries.values()), timeout=45)
    finally:
        server.shutdown()
        server.server_close()
