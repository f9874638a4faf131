"""Browser tests: synchronous (Playwright's sync API), each against its own `jansamvad serve --demo` subprocess."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jansamvad.regions import write_csv
from jansamvad.regions_generate import generate
from tests.browser.harness import CHROMIUM, UI_TIMEOUT_MS, Server, ServerFailed, Tabs, demo_server as start_demo, launch


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(  # keeps the call report, so fixtures can save screenshots on failure
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Server]:
    try:
        with start_demo(tmp_path / "server.stderr") as srv:
            yield srv
    except ServerFailed as exc:
        pytest.fail(str(exc))


def _sync_api() -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = _sync_api()
    with sync_api.sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def tabs(request: pytest.FixtureRequest, demo_server: Server, browser: Any, tmp_path: Path) -> Iterator[Tabs]:
    _sync_api().expect.set_options(timeout=UI_TIMEOUT_MS)
    for role, url in demo_server.links.items():
        assert url.startswith(demo_server.base), f"{role} link {url} is not on {demo_server.base}"
    t = Tabs(browser, tmp_path)
    yield t
    report = getattr(request.node, "rep_call", None)  # set by pytest_runtest_makereport above
    if report is None or report.failed:
        t.screenshots()
        print(demo_server.output())


@pytest.fixture
def regions_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """`serve --demo` with a generated Bihar tree, passed as JANSAMVAD_REGIONS (the harness passes the environment):
    the region-link and roll-up tests share it."""
    source = tmp_path / "bihar.csv"
    source.write_text(write_csv(generate(acs=60, panchayats=200, booths=1000)), encoding="utf-8")
    monkeypatch.setenv("JANSAMVAD_REGIONS", str(source))
    try:
        with start_demo(tmp_path / "server.stderr") as srv:
            yield srv
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture
def region_tabs(regions_server: Server, browser: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Tabs]:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    tabs = Tabs(browser, tmp_path)
    yield tabs
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        tabs.screenshots()
        print(regions_server.output())
