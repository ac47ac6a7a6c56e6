"""docker-compose.yml, checked without a Docker engine: services, images, ports, volumes, referenced files,
dependencies, BREEBOOST_* variables against the Settings object, the `breeboost` commands against the CLI
parser, the topic-creation script (run with a stand-in for kafka-topics.sh), and the Dockerfile."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from breeboost.cli import COMMANDS, build_parser
from breeboost.errors import SettingsError
from breeboost.settings import Settings, env_var

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SETTINGS_VARS = {env_var(f.name): f.name for f in fields(Settings)}
APP_IMAGE_SERVICES = ("training-data", "train", "worker", "incident-agent", "simulator")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# Subcommand flags the compose file passes that the subcommand does not define while it is still a stub
# (its add_<name>_arguments adds nothing). Once the subcommand defines its own flags, the command must
# parse strictly and this list no longer applies to it.
PENDING_FLAGS = {
    "simulate": {"--rate", "--count", "--seed", "--scenario", "--scenario-start", "--scenario-end", "--out"},
    "train": {"--data", "--out"},
    "worker": {"--role", "--state-dir", "--incident-log"},
}

_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


def interpolate(value, env: dict | None = None):
    """Compose's variable substitution with an empty environment: ``${X:-d}`` gives ``d``, ``$$`` gives ``$``.

    >>> interpolate(["${A:-1}", "$$B", {"k": "x${C-2}y"}])
    ['1', '$B', {'k': 'x2y'}]
    """
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(3)
        if name in env:
            return env[name]
        if m.group(2) is None:
            raise AssertionError(f"${{{name}}} has no default: `docker compose up` would need it set")
        return m.group(2)

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _ports(svc: dict) -> list[tuple[str, int, int]]:
    out = []
    for p in svc.get("ports", []):
        parts = str(p).split(":")
        ip, host, container = (parts if len(parts) == 3 else ["0.0.0.0", *parts])
        out.append((ip, int(host), int(container.split("/")[0])))
    return out


# --- structure -----------------------------------------------------------------------------------------
def test_top_level_keys_and_expected_services(compose, services):
    assert set(compose) - {"services", "volumes", "networks"} <= {k for k in compose if k.startswith("x-")}
    expected = {"kafka", "kafka-init", "training-data", "train", "worker", "incident-agent", "simulator",
                "prometheus", "grafana"}
    assert expected <= set(services), expected - set(services)


def test_every_service_has_a_pinned_image_or_a_build_with_its_dockerfile(services):
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
            context = ROOT / build.get("context", ".")
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        else:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"


def test_kafka_is_apache_kafka_in_kraft_mode(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["CLUSTER_ID"], "the apache/kafka image requires CLUSTER_ID in KRaft mode"
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    listeners = dict(x.split("://") for x in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols) and set(advertised) <= set(listeners)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    # Containers bootstrap through the inter-broker listener; the host through a published one.
    app_bootstrap = {_environment(services[s]).get("BREEBOOST_BOOTSTRAP") for s in APP_IMAGE_SERVICES} - {None}
    assert app_bootstrap == {advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]}
    published = {host: container for _, host, container in _ports(kafka)}
    host_side = [hp for hp in advertised.values() if hp.startswith("localhost:")]
    assert host_side, "no listener advertised for clients on the host"
    for hp in host_side:
        port = int(hp.rsplit(":", 1)[1])
        assert published.get(port) == port, f"advertised {hp} but port {port} is not published"
    for k in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[k] == "1", f"{k} must be 1 on a single node"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    assert env["KAFKA_LOG_DIRS"] in mounts, "the log directory is not on a volume"
    assert "healthcheck" in kafka


def test_host_ports_are_unique_and_bound_to_loopback(services):
    seen: dict[int, str] = {}
    for name, svc in services.items():
        for ip, host, _container in _ports(svc):
            assert host not in seen, f"host port {host} used by {seen.get(host)} and {name}"
            seen[host] = name
            assert ip == "127.0.0.1", f"{name}: publish {host} on 127.0.0.1 only"
    assert {9090, 3000, 9464, 9465, 29092} <= set(seen)


def test_volumes_are_declared_and_bind_mounts_exist(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source, target = v.split(":")[:2]
            assert target.startswith("/"), (name, v)
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses volume {source!r}, not declared at the top level"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_depends_on_targets_exist_with_conditions_they_can_meet(services):
    graph: dict[str, set[str]] = {}
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        graph[name] = set(deps)
        for target, spec in deps.items():
            assert target in services, f"{name} depends on unknown service {target}"
            cond = spec.get("condition", "service_started")
            assert cond in CONDITIONS, (name, target, cond)
            if cond == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck for {name}"
            if cond == "service_completed_successfully":
                assert str(services[target].get("restart", "no")) == "no", f"{target} must be one-shot"
    # no cycles
    state: dict[str, int] = {}

    def visit(n: str, path: tuple) -> None:
        assert state.get(n) != 1, f"dependency cycle: {' -> '.join(path + (n,))}"
        if state.get(n) == 2:
            return
        state[n] = 1
        for d in graph[n]:
            visit(d, path + (n,))
        state[n] = 2

    for n in graph:
        visit(n, ())
    # the order the system needs
    assert graph["worker"] >= {"kafka-init", "train"}
    assert graph["train"] == {"training-data"}
    assert "kafka" in graph["kafka-init"]
    assert "kafka-init" in graph["simulator"] and "kafka-init" in graph["incident-agent"]


# --- settings ------------------------------------------------------------------------------------------
def test_every_breeboost_variable_is_a_valid_setting(services):
    for name, svc in services.items():
        env = _environment(svc)
        ours = {k: v for k, v in env.items() if k.startswith("BREEBOOST_")}
        unknown = set(ours) - set(SETTINGS_VARS)
        assert not unknown, f"{name}: {sorted(unknown)} are not Settings fields (breeboost.settings)"
        try:
            Settings.from_env(ours)
        except SettingsError as e:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {e}")


def test_app_services_share_the_settings_that_must_agree(services):
    envs = {s: _environment(services[s]) for s in APP_IMAGE_SERVICES}
    settings = {s: Settings.from_env(e) for s, e in envs.items()}
    for attr in ("bootstrap", "partitions", "group_id", "model_dir") + tuple(
            f.name for f in fields(Settings) if f.name.startswith("topic_")):
        values = {getattr(st, attr) for st in settings.values()}
        assert len(values) == 1, f"services disagree on {attr}: {values}"
    assert all(st.log_format == "json" for st in settings.values())
    for s in ("worker", "incident-agent"):
        st = settings[s]
        assert st.metrics_host == "0.0.0.0", f"{s}: metrics must listen beyond loopback in a container"
        assert any(c == st.metrics_port for _, _, c in _ports(services[s])), f"{s}: metrics port not published"


def test_prometheus_scrapes_the_metrics_ports_of_both_workers(services):
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for s in ("worker", "incident-agent"):
        port = Settings.from_env(_environment(services[s])).metrics_port
        assert f"{s}:{port}" in targets, f"prometheus.yml does not scrape {s}:{port}"
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    config_target = mounts["./prometheus/prometheus.yml"]
    assert f"--config.file={config_target}" in services["prometheus"]["command"]
    for rule_file in config["rule_files"]:
        # Relative rule paths resolve against the config's directory, in the repository and in the container.
        assert (ROOT / "prometheus" / rule_file).is_file()
        assert str(Path(config_target).parent / rule_file) in mounts.values(), f"{rule_file} not mounted"


# --- commands ------------------------------------------------------------------------------------------
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _own_options(sub: argparse.ArgumentParser) -> set[str]:
    """Flags the subcommand defines itself (not help, not the generated settings flags)."""
    return {o for a in sub._actions if a.dest not in SETTINGS_VARS.values() and a.dest != "help"
            for o in a.option_strings}


@pytest.mark.parametrize("service", APP_IMAGE_SERVICES)
def test_app_commands_are_real_breeboost_subcommands(services, service, capsys):
    svc = services[service]
    command = svc["command"]
    assert isinstance(command, list), f"{service}: use the list form, so no shell splits arguments"
    assert command[0] in COMMANDS, f"{service}: `breeboost {command[0]}` does not exist"
    sub = _subparsers()[command[0]]
    if _own_options(sub):
        try:
            build_parser().parse_args(command)
        except SystemExit:
            pytest.fail(f"{service}: `breeboost {' '.join(command)}` is rejected: {capsys.readouterr().err}")
    else:
        _, unknown = build_parser().parse_known_args(command)
        flags = {u.split("=")[0] for u in unknown if u.startswith("--")}
        assert flags <= PENDING_FLAGS.get(command[0], set()), (
            f"{service}: flags {sorted(flags - PENDING_FLAGS.get(command[0], set()))} are neither settings flags "
            f"nor expected from `breeboost {command[0]}`")


def test_simulator_scenario_is_one_the_simulator_knows(services):
    scenarios = pytest.importorskip("simulator.scenarios")
    cmd = services["simulator"]["command"]
    spec = cmd[cmd.index("--scenario") + 1]
    start, end = int(cmd[cmd.index("--scenario-start") + 1]), int(cmd[cmd.index("--scenario-end") + 1])
    assert 0 <= start < end <= int(cmd[cmd.index("--count") + 1])
    scenarios.parse_scenario(spec, start, end)


def test_worker_roles_and_model_location(services):
    assert services["worker"]["command"][:3] == ["worker", "--role", "scoring"]
    assert services["incident-agent"]["command"][:3] == ["worker", "--role", "incident"]
    train = services["train"]["command"]
    model_dir = Settings.from_env(_environment(services["worker"])).model_dir
    assert train[train.index("--out") + 1] == model_dir, "train writes where the worker reads"
    data = train[train.index("--data") + 1]
    gen = services["training-data"]["command"]
    assert gen[0] == "simulate" and gen[gen.index("--out") + 1] == data
    volume_of = lambda s: {v.split(":")[1]: v.split(":")[0] for v in services[s]["volumes"]}  # noqa: E731
    for s in ("training-data", "train", "worker"):
        assert volume_of(s).get("/models") == "models", f"{s} must mount the shared models volume"
    assert model_dir.startswith("/models/") and data.startswith("/models/")


# --- topic creation ------------------------------------------------------------------------------------
def test_kafka_init_creates_every_settings_topic(services, tmp_path):
    """Run the kafka-init script with bash, with a stand-in kafka-topics.sh that records its arguments."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    assert init["entrypoint"][:2] == ["/bin/bash", "-c"]
    script = init["command"][0]
    assert "/opt/kafka/bin/kafka-topics.sh" in script and "--if-not-exists" in script
    stub = tmp_path / "kafka-topics.sh"
    calls = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_environment(init)}
    r = subprocess.run([bash, "-c", script.replace("/opt/kafka/bin/kafka-topics.sh", str(stub))],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = calls.read_text().splitlines()
    creates = [line.split() for line in lines if "--create" in line]
    app = Settings.from_env(_environment(services["worker"]))
    created = {c[c.index("--topic") + 1]: c for c in creates}
    assert set(created) == set(app.topics()), "kafka-init must create exactly the topics the app uses"
    for topic, c in created.items():
        assert c[c.index("--bootstrap-server") + 1] == app.bootstrap
        assert int(c[c.index("--partitions") + 1]) == app.partitions
        assert c[c.index("--replication-factor") + 1] == "1"
        compacted = "cleanup.policy=compact" in c
        assert compacted == (topic == app.topic_incidents), f"{topic}: compaction only for incidents"
    # every BREEBOOST_* of kafka-init is a real setting with the app's value
    for var, value in _environment(init).items():
        assert str(getattr(app, SETTINGS_VARS[var])) == value, var


# --- Dockerfile ----------------------------------------------------------------------------------------
def test_dockerfile_installs_every_package_and_runs_breeboost():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M)
    copied = set()
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            copied.add(src.rstrip("/"))
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = {p.strip().rstrip("*") for p in cfg["options.packages.find"]["include"].split() if p.strip()}
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    assert {"setup.cfg", "pyproject.toml", "README.md"} <= copied
    assert re.search(r"pip install \.(\s|$)", text)
    assert 'ENTRYPOINT ["breeboost"]' in text
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M), "run as a non-root user"


def test_dockerignore_keeps_what_the_image_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    text = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        for src in [p for p in line.split() if not p.startswith("--")][:-1]:
            assert src not in ignored, f".dockerignore drops {src}, which the Dockerfile copies"
    assert ".venv" in ignored and ".git" in ignored


def test_breeboost_commands_in_the_operations_guide_parse(capsys):
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line.split("#")[0].split() for b in blocks for line in b.splitlines()
                if line.strip().startswith("breeboost ")]
    assert commands, "no breeboost command in docs/operations.md"
    for cmd in commands:
        argv = cmd[1:]
        assert argv[0] in COMMANDS, cmd
        if _own_options(_subparsers()[argv[0]]):
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"docs/operations.md: `{' '.join(cmd)}` is rejected: {capsys.readouterr().err}")
