"""Static checks of docker-compose.scale.yml, merged over docker-compose.yml as `docker compose -f … -f …`
merges them: a Redis Cluster of 3 masters with a replica each, 2 API replicas, and a Dask scheduler
with 2 workers for the rebuild.

No Docker engine here: the files are parsed, merged by the Compose specification's rules for the
attributes they use (mappings merge, sequences append, `command`/`entrypoint` and `!override` replace),
and checked against what the image, the settings and the `shopmind` command accept.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.ops.test_ops_compose import _service

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "dispatcher")
NODES = ("redis", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6")
DASK = ("dask-scheduler", "dask-worker")
_REPLACED = {"command", "entrypoint"}


class _Override:
    """A value tagged `!override`: it replaces what the earlier file had instead of merging with it."""

    def __init__(self, value: object) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    return _Override(loader.construct_scalar(node))  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!override", _override)


def _load(name: str) -> dict[str, Any]:
    data = yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass
    assert isinstance(data, dict)
    return data


def _merge(base: object, over: object, key: str = "") -> object:
    if isinstance(over, _Override):
        return over.value
    if key in _REPLACED:
        return over
    if key == "build" and isinstance(base, str):
        base = {"context": base}
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(base[k], v, k) if k in base else (v.value if isinstance(v, _Override) else v)
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    merged = _merge(_load("docker-compose.yml"), _load("docker-compose.scale.yml"))
    assert isinstance(merged, dict)
    return merged


def _address(compose: dict[str, Any], name: str) -> str:
    return str(_service(compose, name)["networks"]["default"]["ipv4_address"])


def _init_script(compose: dict[str, Any]) -> str:
    init = _service(compose, "redis-cluster-init")
    assert init["entrypoint"] == ["sh", "-c"]
    (script,) = init["command"]
    return str(script)


def test_adds_the_cluster_and_dask_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres", *NODES, "redis-cluster-init", "migrate", "api", "worker", "dispatcher", *DASK,
    }


def test_six_cluster_nodes_without_persistence_on_fixed_addresses(compose: dict[str, Any]) -> None:
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    addresses = {_address(compose, n) for n in NODES}
    assert len(addresses) == 6 and all(ipaddress.ip_address(a) in subnet for a in addresses)
    for name in NODES:
        node = _service(compose, name)
        assert str(node["image"]).startswith("redis:7")
        args = node["command"]
        assert args[0] == "redis-server" and args[args.index("--cluster-enabled") + 1] == "yes", name
        # the masters left keep serving their slots while one is replaced by its replica
        assert args[args.index("--cluster-require-full-coverage") + 1] == "no", name
        assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no", name
        assert " ".join(node["healthcheck"]["test"]).endswith("redis-cli ping"), name


def test_the_init_job_forms_one_cluster_of_three_masters_with_a_replica_each(compose: dict[str, Any]) -> None:
    words = shlex.split(_init_script(compose))
    create = words.index("--cluster") if "--cluster" in words else -1
    assert words[create + 1] == "create"
    named = [w.removesuffix(":6379") for w in words[create + 2 : create + 8]]
    assert sorted(named) == sorted(_address(compose, n) for n in NODES)
    assert words[words.index("--cluster-replicas") + 1] == "1"
    assert re.search(r"--cluster-yes\b", _init_script(compose)), "redis-cli would wait for a yes at its prompt"
    # idempotent on a restart, and done only once the cluster answers
    assert _init_script(compose).count("cluster_state:ok") == 2
    init = _service(compose, "redis-cluster-init")
    assert init["restart"] == "no"
    assert init["depends_on"] == {n: {"condition": "service_healthy"} for n in NODES}


def test_app_services_use_the_cluster_once_it_is_formed(compose: dict[str, Any]) -> None:
    nodes = {_address(compose, n) for n in NODES}
    fields = {f"SHOPMIND_{name.upper()}" for name in Settings.model_fields}
    for name in APP_SERVICES:
        service = _service(compose, name)
        env = service["environment"]
        if name != "migrate":  # migrate touches Postgres only
            assert env["SHOPMIND_REDIS_CLUSTER"] == "true", name
            host = re.fullmatch(r"redis://([\d.]+):6379/0", env["SHOPMIND_REDIS_URL"])
            assert host and host.group(1) in nodes, name
            assert service["depends_on"]["redis-cluster-init"] == {"condition": "service_completed_successfully"}
        unknown = {k for k in env if k.startswith("SHOPMIND_")} - fields
        assert not unknown, f"{name}: no such setting {unknown}"


def test_two_api_replicas_each_with_its_own_port(compose: dict[str, Any]) -> None:
    api = _service(compose, "api")
    assert api["deploy"]["replicas"] == 2
    (port,) = api["ports"]  # the base file's single port is replaced, not added to
    published = re.fullmatch(r"\$\{SHOPMIND_PORT_RANGE:-(\d+)-(\d+)\}:8000", port)
    assert published and int(published.group(2)) - int(published.group(1)) + 1 == 2


def test_the_worker_rebuilds_on_two_dask_workers_of_its_own_image(compose: dict[str, Any]) -> None:
    from distributed.cli.dask_scheduler import main as dask_scheduler
    from distributed.cli.dask_worker import main as dask_worker

    address = _service(compose, "worker")["environment"]["SHOPMIND_DASK_SCHEDULER"]
    reached = re.fullmatch(r"tcp://([\w-]+):(\d+)", address)
    assert reached and reached.group(1) == "dask-scheduler", address
    scheduler = _service(compose, "dask-scheduler")
    name, *args = scheduler["command"]
    assert name == "scheduler" and str(dask_scheduler.make_context(name, args).params["port"]) == reached.group(2)
    workers = _service(compose, "dask-worker")
    name, *args = workers["command"]
    assert name == "worker" and dask_worker.make_context(name, args).params["scheduler"] == address
    assert workers["deploy"]["replicas"] == 2
    assert _service(compose, "worker")["depends_on"]["dask-scheduler"] == {"condition": "service_started"}
    # the driver and the cluster run one image built with the extra: the same Dask and code at both ends
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dask"]
    assert any(dep.startswith("dask[distributed]") for dep in extra)
    images = set()
    for name in ("worker", *DASK):
        service = _service(compose, name)
        assert service["build"] == {"context": ".", "args": {"EXTRAS": "dask"}}, name
        images.add(service["image"])
    assert len(images) == 1 and images != {_service(compose, "api")["image"]}  # not the base image's tag
    for name in DASK:
        assert _service(compose, name)["entrypoint"] == ["dask"]
        assert _service(compose, name)["healthcheck"] == {"disable": True}  # the image's own is the API's
