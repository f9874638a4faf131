"""A quiet node's reports (issue 19 item 4): an unchanged presence or roll-up report is renewed only once it is half
its lifetime old, not every tick, and never lets the node drop out; any change is still written on the next tick."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from jansamvad.regions_http import RegionDirectory
from jansamvad.report_renewal import renew_after_s, report_ttl_s
from jansamvad.rollup.base import COUNTERS, UnitCounts
from jansamvad.rollup.memory import MemoryRollup
from jansamvad.rollup.tally import UnitTally
from jansamvad.rollup.writer import RollupWriter
from jansamvad.store.memory import MemoryStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class CountedRollup:
    """The in-memory roll-up, counting the writes that reach it."""

    def __init__(self) -> None:
        self.inner = MemoryRollup()
        self.writes: list[str] = []

    async def write(
        self, node_id: str, th: str, gauges: Mapping[str, int], activity: Mapping[str, Mapping[str, int]], *, full: bool
    ) -> bool:
        self.writes.append(th)
        return await self.inner.write(node_id, th, gauges, activity, full=full)

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        return await self.inner.read(th, codes, counters)

    async def close(self) -> None:
        await self.inner.close()


def test_report_renewal_is_half_the_lifetime_and_lands_a_tick_early() -> None:
    assert (report_ttl_s(1.0), renew_after_s(1.0)) == (3.0, 1.5)  # every second 1 s tick renews a quiet report
    assert report_ttl_s(0.1) == 1.0  # the lifetime's floor
    for interval in (0.1, 0.2, 0.5, 1.0, 5.0, 60.0):
        # A quiet report is renewed on the first tick at least renew_after old: one tick later at worst.
        assert renew_after_s(interval) + interval < report_ttl_s(interval)


async def test_report_renewal_rollup_writer_skips_unchanged_reports_until_half_their_lifetime() -> None:
    tally, rollup = UnitTally(), CountedRollup()
    writer = RollupWriter("node-1", tally, rollup, RegionDirectory(MemoryStore()))
    tally.join("th", "")
    await writer.write_once(renew_after=1.5, now=100.0)
    assert rollup.writes == ["th"]  # a new report: written at once
    await writer.write_once(renew_after=1.5, now=101.0)
    assert rollup.writes == ["th"]  # nothing changed, renewed 1 s ago: nothing to do
    await writer.write_once(renew_after=1.5, now=102.0)
    assert rollup.writes == ["th"] * 2  # 2 s old: renewed
    tally.count("th", "asked", "")
    await writer.write_once(renew_after=1.5, now=102.5)
    assert rollup.writes == ["th"] * 3  # a change goes out on the next tick, however fresh the report
    await writer.write_once()
    assert rollup.writes == ["th"] * 4  # the last write before closing renews every report
    tally.leave("th", "")
    await writer.write_once(renew_after=1.5, now=102.6)
    assert rollup.writes == ["th"] * 5 and tally.pending() == []
