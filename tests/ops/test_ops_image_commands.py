"""The commands the image and docker-compose.yml run exist and parse, and `migrate` really works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _shopmind() -> list[str]:
    """The installed console script when there is one (as in the image), else the module."""
    script = Path(sys.executable).parent / "shopmind"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SHOPMIND_", "PROMETHEUS_"))}


@pytest.mark.parametrize("command", ["serve", "worker", "migrate", "import", "export"])
def test_help_runs_without_any_server(command: str) -> None:
    result = subprocess.run([*_shopmind(), command, "--help"], env=_clean_env(), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: shopmind {command}"), result.stdout


def _image_commands() -> list[list[str]]:
    """The Dockerfile's default CMD and every `command:` in docker-compose.yml."""
    commands = [
        json.loads(line.removeprefix("CMD").strip())
        for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    ]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app_services = [s for s in compose["services"].values() if s.get("build")]
    commands += [s["command"] for s in app_services]
    return commands


@pytest.mark.parametrize("argv", _image_commands(), ids=lambda argv: " ".join(argv))
def test_image_commands_parse(argv: list[str]) -> None:
    """Every option the deployment passes is one the command accepts (parsed, not run)."""
    name, *args = argv
    command = main.get_command(click.Context(main), name)
    assert command is not None, f"no `shopmind {name}`"
    command.make_context(name, list(args))  # raises click.UsageError on an unknown option or bad value


def test_migrate_runs_against_a_real_database(database_url: str, redis_url: str) -> None:
    env = {**_clean_env(), "SHOPMIND_DATABASE_URL": database_url, "SHOPMIND_REDIS_URL": redis_url}
    result = subprocess.run([*_shopmind(), "migrate"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "schema at head" in result.stdout
