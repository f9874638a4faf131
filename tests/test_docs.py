"""The docs describe this repository: every module is named in docs/architecture.md, every relative link and every
repository path the docs mention exists, and no docstring or comment in server/ points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "server" / "jansamvad"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What only exists on the machine that wrote it: research notes next to the repository, absolute machine paths.
OUTSIDE = re.compile(r"\.\./shared|shared/research|research/[\w-]+\.md|/work/|/home/|/tmp/")
REPO_DIRS = ("docs", "tests", "server", "client_web", "loadtest", "infra", "scripts", "fuzzing")
GENERATED = ("loadtest/reports/",)  # what a bench run writes (git-ignored): named as where to find the raw data


def modules() -> list[str]:
    """Every module of the package, as docs/architecture.md names it: `node.py`, `broker/redis.py`."""
    return sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")


def test_docs_architecture_names_every_module() -> None:
    named = set(re.findall(r"`([\w/]+\.py)`", (ROOT / "docs" / "architecture.md").read_text()))
    missing = [module for module in modules() if module not in named]
    assert not missing, f"modules not named in docs/architecture.md: {missing}"
    assert len(modules()) > 40  # the walk found the package


def test_docs_relative_links_resolve_to_files_in_the_repository() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor in the same page
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or not path.is_relative_to(ROOT):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_docs_repository_paths_they_mention_exist() -> None:
    missing = []
    for doc in DOCS:
        for quoted in re.findall(r"`([^`\s]+)`", doc.read_text()):
            path = quoted.split("::", 1)[0].rstrip(",.:")
            if path.split("/", 1)[0] not in REPO_DIRS or "/" not in path or re.search(r"[<>*{}$]", path):
                continue
            if path.startswith(GENERATED):
                continue
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {quoted}")
    assert not missing, missing


def test_docs_nothing_points_outside_the_repository() -> None:
    found = []
    for doc in DOCS:
        found += [f"{doc.relative_to(ROOT)}: {m}" for m in OUTSIDE.findall(doc.read_text())]
    for source in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{source.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, found


def test_docs_redis_keys_docstring_names_the_control_channel_key() -> None:
    import jansamvad.redis_keys
    from jansamvad.node import CONTROL_CHANNEL
    from jansamvad.redis_keys import RedisKeys

    pub = RedisKeys("P").channel(CONTROL_CHANNEL).pub
    assert pub == "P:{ch:ctl}:pub"  # the `{ch:…}` form is in use: the ban-kick control channel
    doc = jansamvad.redis_keys.__doc__ or ""
    assert pub in doc and "not used" not in doc
