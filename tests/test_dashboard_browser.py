"""The dashboard in a real browser against a running system, as an operator uses it.

``breeboost demo --keep`` runs the embedded broker, the scoring worker, the incident agent and the
dashboard, and a drift scenario fires a feature_drift incident that resolves. Debian's chromium (through
chromedriver and selenium) then opens every page: the overview shows the incident and its status, each
page draws its charts, and acknowledging the incident on the Incidents page publishes the note with who
did it, as ``breeboost incidents ack`` would. Screenshots of each page are taken; with
``BREEBOOST_DASHBOARD_SCREENSHOTS=DIR`` they are also copied to DIR (``docs/images`` for the docs).
Ctrl-C then stops every process the demo started.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGES = ("overview", "transactions", "drift", "model-health", "incidents", "simulator")


def _browser(tmp_path: Path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        msg = "Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    o = Options()
    o.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1700",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        o.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)   # never selenium-manager


def _wait_text(b, *needles: str, timeout_s: float = 60.0) -> str:
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        text = b.find_element("tag name", "body").text
        if all(n in text for n in needles):
            return text
        time.sleep(1.0)
    raise AssertionError(f"page never showed {needles}; it shows:\n{text[:3000]}")


def _charts(b) -> int:
    return len(b.find_elements("css selector", "[data-testid='stVegaLiteChart']"))


def _wait_charts(b, n: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while _charts(b) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return _charts(b)


def _start_demo(tmp_path: Path, model: str, port: int) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, BREEBOOST_WINDOW_SIZE="5000", BREEBOOST_MODEL_DIR=model, BREEBOOST_WINDOW_IDLE_S="2",
               SE_AVOID_STATS="true")
    out = tmp_path / "demo.out"
    p = subprocess.Popen([sys.executable, "-m", "breeboost.cli", "demo", "--count", "60000", "--rate", "6000",
                          "--keep", "--dashboard-port", str(port), "--out", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, stdout=open(out, "w"), stderr=subprocess.STDOUT)
    return p, out


def _wait_demo(p: subprocess.Popen, out: Path, timeout_s: float = 240.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = out.read_text()
        if "keep running" in text:
            return text
        assert p.poll() is None, text[-3000:]
        time.sleep(1.0)
    raise AssertionError(f"demo not kept running after {timeout_s}s:\n{out.read_text()[-3000:]}")


def _acknowledge(b, url: str, tmp_path: Path) -> None:
    b.get(url + "incidents")
    _wait_text(b, "Acknowledge or close the selected incident", "Root cause (RCA)")
    # Streamlit renders a page in pieces: the section's text can be there before its form (a loaded CI host)
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    note = WebDriverWait(b, 60).until(ec.element_to_be_clickable(("css selector", "input[aria-label='Note']")))
    note.send_keys("seen in the browser test")
    WebDriverWait(b, 60).until(ec.element_to_be_clickable(("xpath", "//button[.//p[text()='Acknowledge']]"))).click()
    _wait_text(b, "acknowledged by")


@pytest.mark.slow
def test_the_browser_shows_the_incident_the_scenario_fired(tmp_path, paysim_model, monkeypatch):
    from breeboost.broker import free_port
    from breeboost.settings import Settings
    from incident.topic import read_events

    monkeypatch.setenv("SE_AVOID_STATS", "true")
    port = free_port()
    demo, out = _start_demo(tmp_path, paysim_model, port)
    b = None
    try:
        text = _wait_demo(demo, out)
        assert "incident RESOLVED" in text and f"dashboard: http://127.0.0.1:{port}/" in text
        url = f"http://127.0.0.1:{port}/"
        b = _browser(tmp_path)
        b.get(url)
        page = _wait_text(b, "feature_drift", "resolved")
        assert "0 open, 1 in all" in page
        assert _wait_charts(b, 2) >= 2
        shots = tmp_path / "shots"
        shots.mkdir()
        for name in PAGES:
            b.get(url + ("" if name == "overview" else name))   # the default page is served at /
            time.sleep(6)   # two refreshes: the metrics history has points, the charts are drawn
            b.save_screenshot(str(shots / f"dashboard-{name}.png"))
            assert _charts(b) >= (0 if name in ("transactions", "simulator") else 1), name
        _acknowledge(b, url, tmp_path)
        bootstrap = re.search(r"embedded broker on (127\.0\.0\.1:\d+)", text).group(1)
        events = read_events(Settings.from_env({}, bootstrap=bootstrap))
        acked = [e for e in events if e["event"] == "acknowledged"]
        assert acked and acked[-1]["notes"][-1]["text"] == "seen in the browser test"
        assert acked[-1]["notes"][-1]["author"].endswith("(dashboard)")
        target = os.environ.get("BREEBOOST_DASHBOARD_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            for f in shots.iterdir():
                shutil.copy(f, Path(target) / f.name)
    finally:
        if b is not None:
            b.quit()
        children = subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True, text=True).stdout.split()
        demo.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        demo.wait(30)
        stopped_in = time.monotonic() - t0
    assert stopped_in < 8, stopped_in
    time.sleep(0.5)
    assert len(children) >= 4   # broker, worker, incident agent, dashboard
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
