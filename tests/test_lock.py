"""The lock files (requirements/, written by `make lock`) pin every dependency inside pyproject.toml's ranges, agree
with each other, and are what the image, `make run` and CI install (docs/operations.md, "Dependencies and the lock").
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUN_LOCK = ROOT / "requirements" / "run.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
CI_EXTRAS = ("dev", "loadtest", "infra", "uring")  # what .venv/.installed-dev installs and CI runs with


def pins(lock: Path) -> dict[str, str]:
    """name -> pinned version of every line `name==version[ ; marker]` of a lock."""
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return dict(tomllib.load(file)["project"])


def outside(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    """The requirements a lock has no pin for, or pins outside their range."""
    wrong = []
    for text in requirements:
        requirement = Requirement(text)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{text} (locked: {version})")
    return wrong


def test_lock_run_pins_every_dependency_inside_its_range() -> None:
    dependencies = list(project()["dependencies"])  # type: ignore[call-overload]
    assert len(dependencies) >= 10
    assert not outside(dependencies, pins(RUN_LOCK)), "run `make lock` after changing pyproject.toml"


def test_lock_dev_pins_every_dependency_and_ci_extra_inside_its_range() -> None:
    spec = project()
    wanted = list(spec["dependencies"])  # type: ignore[call-overload]
    for extra in CI_EXTRAS:
        wanted += spec["optional-dependencies"][extra]  # type: ignore[index]
    assert not outside(wanted, pins(DEV_LOCK)), "run `make lock` after changing pyproject.toml"


def test_lock_dev_has_the_same_versions_as_run() -> None:
    run, dev = pins(RUN_LOCK), pins(DEV_LOCK)
    differ = {name: (version, dev.get(name)) for name, version in run.items() if dev.get(name) != version}
    assert not differ, f"run.txt and dev.txt disagree (run `make lock`): {differ}"


def test_lock_no_dependency_is_listed_twice() -> None:
    spec = project()
    lists = {"dependencies": spec["dependencies"], **spec["optional-dependencies"]}  # type: ignore[dict-item]
    seen: dict[str, str] = {}
    twice = []
    for where, requirements in lists.items():
        for text in requirements:
            name = canonicalize_name(Requirement(text).name)
            if name in seen:
                twice.append(f"{name}: {seen[name]} and {where}")
            seen[name] = where
    assert not twice, twice


def test_lock_is_what_the_image_make_and_ci_install() -> None:
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^COPY requirements/run\.txt requirements\.txt$", dockerfile, re.MULTILINE)
    assert "pip wheel --wheel-dir /wheels -r requirements.txt" in dockerfile
    assert "--no-deps --find-links /wheels jansamvad" in dockerfile  # the project resolves nothing of its own
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "LOCK_RUN := requirements/run.txt" in makefile and "LOCK_DEV := requirements/dev.txt" in makefile
    installs = re.findall(r"pip install .*", makefile)
    assert any("-r $(LOCK_RUN)" in line for line in installs) and any("-r $(LOCK_DEV)" in line for line in installs)
    assert not [line for line in installs if "-e ." in line and "--no-deps" not in line and "--constraint" not in line]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI installs through the Makefile
