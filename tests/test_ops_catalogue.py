"""The metrics catalogue (docs/metrics.md) against the code that registers metrics, the alert rules and the
Grafana dashboard; the dashboard and its provisioning are well-formed."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "docs" / "metrics.md"
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "breeboost.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
PACKAGES = ("breeboost", "streams", "models", "detectors", "incident", "simulator")
METRIC_CLASSES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
                  "Info": "info", "Enum": "stateset"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- parsing -------------------------------------------------------------------------------------------
def _cells(line: str) -> list[str]:
    """Cells of a Markdown table row; `\\|` is a literal bar inside a cell."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def catalogue() -> dict[str, dict]:
    """``{name: {"type", "labels", "meaning"}}`` from the tables of docs/metrics.md."""
    out = {}
    for line in CATALOGUE.read_text().splitlines():
        if not line.startswith("| `breeboost_"):
            continue
        name, typ, labels, meaning, _emitted = _cells(line)
        name = name.strip("`")
        assert name not in out, f"{name} listed twice"
        # Label names are the backticked words left once value lists `(...)` and `= a | b` are removed.
        bare = re.sub(r"=[^,]*", "", re.sub(r"\([^)]*\)", "", labels))
        out[name] = {"type": typ, "labels": set(re.findall(r"`(\w+)`", bare)), "meaning": meaning}
    return out


def registered_metrics() -> dict[str, dict]:
    """Every metric the packages register with prometheus_client, by exposed name (read from the AST)."""
    found: dict[str, dict] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                cls = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if cls not in METRIC_CLASSES or not node.args:
                    continue
                first = node.args[0]
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)
                        and first.value.startswith("breeboost_")):
                    continue
                labels_node = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg == "labelnames"), None)
                labels = set(ast.literal_eval(labels_node)) if labels_node is not None else set()
                name = first.value
                if cls == "Counter":
                    name = name.removesuffix("_total") + "_total"
                elif cls == "Info":
                    name += "_info"
                found[name] = {"type": METRIC_CLASSES[cls], "labels": labels,
                               "where": f"{path.relative_to(ROOT)}:{node.lineno}"}
    return found


def _base_name(metric: str, known: dict) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = metric.removesuffix(suffix)
        if base != metric and known.get(base, {}).get("type") == "histogram":
            return base
    return metric


def promql_metrics(expr: str) -> set[str]:
    """Project metric names an expression reads (label names and values are not metric names).

    >>> sorted(promql_metrics('sum by (le) (rate(breeboost_x_bucket{outcome="breeboost_no"}[5m])) / up'))
    ['breeboost_x_bucket']
    """
    no_matchers = re.sub(r"\{[^}]*\}", "", expr)
    return set(re.findall(r"\bbreeboost_[a-zA-Z0-9_]+", no_matchers))


def alert_exprs() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard()["panels"]
            if p["type"] != "row"}


# --- catalogue -----------------------------------------------------------------------------------------
def test_catalogue_is_a_well_formed_table():
    cat = catalogue()
    assert len(cat) >= 17
    for name, row in cat.items():
        assert re.fullmatch(r"breeboost_[a-z0-9_]+", name), name
        assert row["type"].split()[0] in set(METRIC_CLASSES.values()), (name, row["type"])
        assert row["meaning"], name
        if row["type"] == "counter":
            assert name.endswith("_total"), name


def test_catalogue_names_every_metric_of_the_contracts():
    """docs/contracts.md lists the agreed names; each one is in the catalogue."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text[text.index("## Metrics"):]
    agreed = set(re.findall(r"`(breeboost_[a-z0-9_]+)", section))
    assert agreed, "no metric names found in docs/contracts.md"
    assert agreed <= set(catalogue()), sorted(agreed - set(catalogue()))


def test_every_registered_metric_is_in_the_catalogue_with_its_type_and_labels():
    found = registered_metrics()
    if not found:
        pytest.skip("no package registers metrics yet")
    cat = catalogue()
    missing = {n: m["where"] for n, m in found.items() if n not in cat}
    assert not missing, f"metrics registered in code but not in docs/metrics.md: {missing}"
    for name, m in found.items():
        assert cat[name]["type"].split()[0] == m["type"], (name, m["where"])
        if m["type"] != "info":  # an Info's labels are its keys, set at run time
            assert cat[name]["labels"] == m["labels"], (name, m["where"], cat[name]["labels"], m["labels"])


def test_every_catalogued_metric_is_registered_by_the_code():
    found = registered_metrics()
    if not found:
        pytest.skip("no package registers metrics yet")
    stale = set(catalogue()) - set(found)
    assert not stale, f"docs/metrics.md lists metrics no code registers: {sorted(stale)}"


def test_alert_rules_use_only_catalogued_metrics():
    cat = catalogue()
    for alert, expr in alert_exprs().items():
        unknown = {m for m in promql_metrics(expr) if _base_name(m, cat) not in cat}
        assert not unknown, f"{alert} reads metrics missing from docs/metrics.md: {unknown}"


def test_dashboard_uses_only_catalogued_metrics():
    cat = catalogue()
    for title, exprs in dashboard_exprs().items():
        for expr in exprs:
            unknown = {m for m in promql_metrics(expr) if _base_name(m, cat) not in cat}
            assert not unknown, f"panel {title!r} reads metrics missing from docs/metrics.md: {unknown}"


# --- dashboard -----------------------------------------------------------------------------------------
EXPECTED_PANELS = {
    # panel title: metrics it must read
    "Throughput": {"breeboost_events_total"},
    "Scoring latency p50 / p99": {"breeboost_event_latency_seconds_bucket"},
    "Dead-letter rate by reason": {"breeboost_dead_letters_total"},
    "Dead-lettered share": {"breeboost_events_total"},
    "PSI per feature": {"breeboost_feature_psi", "breeboost_drift_threshold_psi"},
    "KS statistic per feature": {"breeboost_feature_ks_statistic"},
    "Score PSI": {"breeboost_score_psi"},
    "Windows closed": {"breeboost_windows_closed_total"},
    "Open incidents by severity": {"breeboost_incidents_open"},
    "Incident events by severity": {"breeboost_incident_events_total"},
}


def test_dashboard_has_the_expected_panels():
    exprs = dashboard_exprs()
    for title, metrics in EXPECTED_PANELS.items():
        assert title in exprs, f"no panel {title!r}"
        read = set().union(*(promql_metrics(e) for e in exprs[title]))
        assert metrics <= read, (title, metrics - read)
    latency = " ".join(exprs["Scoring latency p50 / p99"])
    assert "histogram_quantile(0.5," in latency and "histogram_quantile(0.99," in latency
    assert "by (feature)" in " ".join(exprs["PSI per feature"] + exprs["KS statistic per feature"])
    assert "by (severity)" in " ".join(exprs["Open incidents by severity"])
    assert "by (reason)" in " ".join(exprs["Dead-letter rate by reason"])


def test_dashboard_is_well_formed_and_bound_to_the_provisioned_datasource():
    dash = dashboard()
    assert dash["uid"] == "breeboost" and dash["title"] and dash["schemaVersion"] >= 36
    ds = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {d["uid"] for d in ds if d["type"] == "prometheus"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in uids, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] in uids and t["expr"].strip(), p["title"]
            assert t["expr"].count("(") == t["expr"].count(")"), (p["title"], t["expr"])


def test_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_provider_points_at_the_mounted_dashboards_folder():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert any(p["options"]["path"] == mounts["./grafana/dashboards"] for p in providers)
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (ROOT / "grafana" / "dashboards" / DASHBOARD.name).exists()
