"""The GitHub Actions workflow users get: valid against the published workflow schema (check-jsonschema's
vendored copy, no network), and it runs this project's CI script and builds the image."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _check(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_workflow_is_valid_against_the_github_workflow_schema():
    r = _check(WORKFLOW)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_validator_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  test:\n    runs-on: 3\n    steps: nope\n")
    assert _check(bad).returncode != 0


def test_workflow_runs_the_ci_script_and_builds_the_image():
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    assert any("bash .ci/run" in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("docker/build-push-action") for s in steps)
    assert (ROOT / ".ci" / "run").exists() and (ROOT / "Dockerfile").exists()


if __name__ == "__main__":   # pragma: no cover
    pytest.main([__file__])
