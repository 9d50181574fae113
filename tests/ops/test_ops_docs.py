"""The README and docs/ stand on their own and say what the code does.

Links resolve to files inside the repository (a reader of a release has nothing beside it); no path
climbs out of it; the routes, settings and CLI commands the pages name exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.cli import main as cli
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("architecture.md", "api-guide.md", "operations.md", "scaling.md")
PAGES = [ROOT / "README.md", *(ROOT / "docs" / name for name in DOCS)]

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CLIMB = re.compile(r"(?<![\w.])(?:\.\./)+[\w./-]*")
_HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.MULTILINE)
_V1_PATH = re.compile(r"(/v1/[\w{}./:-]*[\w}])")
_SETTING = re.compile(r"\bSHOPMIND_([A-Z][A-Z0-9_]*[A-Z0-9])\b")
_COMMAND = re.compile(r"\bshopmind ((?:[a-z]+)(?: [a-z]+)?)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _text(page: Path) -> str:
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    return page.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(page: Path) -> None:
    text = _text(page)
    broken: list[str] = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: outside by nature, not a file of ours
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md":
            anchors = {_slug(h) for h in _HEADING.findall(resolved.read_text())}
            if anchor not in anchors:
                broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_points_outside_the_repository(page: Path) -> None:
    text = _text(page)
    assert "shared/" not in text.replace("one shared socket", ""), "names the workspace's shared folder"
    outside = [m for m in _CLIMB.findall(text) if not (page.parent / m).resolve().is_relative_to(ROOT)]
    assert not outside, f"{page.name} points outside the repository: {outside}"


def test_readme_links_every_docs_page_and_architecture_has_its_diagram() -> None:
    readme = _text(ROOT / "README.md")
    for name in DOCS:
        assert f"](docs/{name})" in readme, f"README does not link docs/{name}"
    architecture = _text(ROOT / "docs" / "architecture.md")
    assert architecture.count("```mermaid") == 1 and "flowchart" in architecture
    guide = _text(ROOT / "docs" / "api-guide.md")
    for use_case in ("track", "recommendations", "audiences", "propensity"):
        assert use_case in guide
    runbook = _text(ROOT / "docs" / "operations.md").lower()
    for topic in ("migrat", "keys", "worker", "outage", "backup", "monitor"):
        assert topic in runbook, f"the runbook says nothing about {topic}"


def _route_paths(client: TestClient) -> set[str]:
    paths = {r.path for r in client.app.routes if isinstance(r, APIRoute)}  # type: ignore[attr-defined]
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        pass
    else:
        paths |= {rc.path for rc in iter_route_contexts(client.app.router.routes)  # type: ignore[attr-defined]
                  if isinstance(rc.original_route, APIRoute)}
    return paths


def test_routes_settings_and_commands_named_in_the_docs_exist(client: TestClient) -> None:
    paths = _route_paths(client)
    # a concrete path (`/v1/users/c-42/merge`) or a family of routes named by their prefix (`/v1/users`)
    patterns = [re.compile(re.sub(r"\\\{\w+\\\}", r"[^/?]+", re.escape(p)) + "$") for p in paths]
    fields = {name.upper() for name in Settings.model_fields}
    # variables of the compose files themselves (their published ports), not settings of the service
    for compose in ("docker-compose.yml", "docker-compose.scale.yml"):
        fields |= set(re.findall(r"\$\{SHOPMIND_(\w+?)(?::-[^}]*)?\}", (ROOT / compose).read_text()))
    commands = {name for name in cli.commands}
    keys_group = cli.commands["keys"]
    assert isinstance(keys_group, click.Group)
    commands |= {f"keys {sub}" for sub in keys_group.commands}
    problems: list[str] = []
    for page in PAGES:
        text = _text(page)
        for path in set(_V1_PATH.findall(text)):
            bare = re.sub(r"\$\w+", "x", path.split("?")[0])
            if not any(p.match(bare) for p in patterns) and not any(t.startswith(bare + "/") for t in paths):
                problems.append(f"{page.name}: no route {path}")
        for setting in set(_SETTING.findall(text)):
            if setting not in fields and not setting.startswith("TEST_"):
                problems.append(f"{page.name}: no setting SHOPMIND_{setting}")
        for command in set(_COMMAND.findall(text)):
            if command not in commands and command.split(" ")[0] not in commands:
                problems.append(f"{page.name}: no command `shopmind {command}`")
    assert not problems, "\n".join(sorted(problems))
