"""Static checks of docker-compose.yml: the services, their order, health checks and configuration.

No Docker engine is needed: the file is parsed (YAML merge keys resolved) and checked against what the
image and the `shopmind` command accept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "dispatcher")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def _test_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_has_exactly_the_expected_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "api", "worker", "dispatcher"}


def test_postgres_is_16_healthchecked_and_persistent(compose: dict[str, Any]) -> None:
    pg = _service(compose, "postgres")
    assert str(pg["image"]).startswith("postgres:16")
    assert "pg_isready" in _test_command(pg)
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    volume = next(str(v).split(":")[0] for v in pg["volumes"] if str(v).endswith(":/var/lib/postgresql/data"))
    assert volume in (compose.get("volumes") or {})
    assert "ports" not in pg, "the database should not be published outside the compose network"


def test_redis_is_7_and_healthchecked(compose: dict[str, Any]) -> None:
    redis = _service(compose, "redis")
    assert str(redis["image"]).startswith("redis:7")
    assert _test_command(redis).split()[-2:] == ["redis-cli", "ping"]


def test_app_services_share_one_image(compose: dict[str, Any]) -> None:
    builds = {str(_service(compose, n).get("build")) for n in APP_SERVICES}
    images = {str(_service(compose, n).get("image")) for n in APP_SERVICES}
    assert builds == {"."} and len(images) == 1


def test_commands_per_role(compose: dict[str, Any]) -> None:
    assert _service(compose, "migrate")["command"] == ["migrate"]
    assert _service(compose, "worker")["command"] == ["worker"]
    assert _service(compose, "dispatcher")["command"] == ["dispatcher"]
    api = _service(compose, "api")["command"]
    assert api[0] == "serve"
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert api[api.index("--port") + 1] == "8000"
    assert "--no-worker" in api and "--no-demo" in api  # the worker service does the rebuilds


def test_start_order_waits_for_health_and_migration(compose: dict[str, Any]) -> None:
    migrate = _service(compose, "migrate")
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    for name in ("api", "worker", "dispatcher"):
        assert _service(compose, name)["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_api_publishes_8000_and_is_healthchecked(compose: dict[str, Any]) -> None:
    api = _service(compose, "api")
    assert any(str(p).endswith(":8000") for p in api["ports"])
    check = _test_command(api)
    assert "/healthz" in check and "curl" not in check and "wget" not in check
    for name in ("migrate", "worker", "dispatcher"):  # no HTTP server there: the image's API check must be off
        assert _service(compose, name)["healthcheck"] == {"disable": True}, name


def test_environment_points_at_the_compose_servers(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _service(compose, name)["environment"]
        assert re.fullmatch(r"postgresql://[^@]+@postgres:5432/\w+", env["SHOPMIND_DATABASE_URL"]), name
        assert env["SHOPMIND_REDIS_URL"] == "redis://redis:6379/0"
        assert env["SHOPMIND_ADMIN_KEY"].startswith("${SHOPMIND_ADMIN_KEY:?"), "admin key must be required"


def test_every_shopmind_variable_is_a_setting(compose: dict[str, Any]) -> None:
    fields = {f"SHOPMIND_{name.upper()}" for name in Settings.model_fields}
    for name in APP_SERVICES:
        unknown = {k for k in _service(compose, name)["environment"] if k.startswith("SHOPMIND_")} - fields
        assert not unknown, f"{name}: no such setting {unknown}"


def test_every_setting_is_in_the_readme_table() -> None:
    """The README's configuration table names every setting (the docs match the code)."""
    table = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("## Configuration", 1)[1]
    table = table.split("\n\n**", 1)[0]
    named = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M))
    assert named == {name.upper() for name in Settings.model_fields}
