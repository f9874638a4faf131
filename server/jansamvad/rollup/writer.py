"""A node's roll-up writes: once per presence interval, what its `UnitTally` counted, summed up the region tree,
one write per town hall with changes, all town halls concurrently (pipelined)."""

from __future__ import annotations

import asyncio
import logging

from jansamvad.regions_http import RegionDirectory
from jansamvad.report_renewal import renew_after_s
from jansamvad.rollup.base import Rollup
from jansamvad.rollup.tally import UnitTally, path_in

log = logging.getLogger("jansamvad.node")


class RollupWriter:
    def __init__(self, node_id: str, tally: UnitTally, rollup: Rollup, regions: RegionDirectory) -> None:
        self._node_id = node_id
        self._tally = tally
        self._rollup = rollup
        self._regions = regions
        self._lock = asyncio.Lock()  # one roll-up write per town hall at a time (the tick, the last one)
        self._renewed: dict[str, float] = {}  # town hall -> loop time of the last write that landed

    async def run(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            await self.write_once(renew_after=renew_after_s(interval_s), now=loop.time())

    async def write_once(self, *, renew_after: float = 0.0, now: float = 0.0) -> None:
        """Write every town hall with changes; one without is written (its report renewed) only once its last write
        is `renew_after` seconds old at `now` (0: every town hall, as the last write before closing does)."""
        tally = self._tally
        renewed = self._renewed
        due = [
            th
            for th in tally.pending()
            if not renew_after or tally.changed(th) or now - renewed.get(th, -renew_after) >= renew_after
        ]
        if not due:
            return
        index = None
        if tally.has_units:  # only citizens with a unit need the tree (no store call for town halls without)
            try:
                index = await self._regions.index()
            except OSError:  # no copy of the tree yet and the store is unreachable: units count under their own code
                pass
        path_of = path_in(index.tree if index is not None else None)

        async def write(th: str) -> None:
            viewers, activity, full = tally.take(th, path_of)
            report = f"{self._node_id}.{tally.report(th)}"
            try:
                written = await self._rollup.write(report, th, viewers, activity, full=full)
            except Exception as exc:
                log.warning("roll-up write failed: %s", type(exc).__name__)
                tally.written(th, "failed")
            else:  # forgotten: taken for dead meanwhile; its next write starts the report again, whole
                tally.written(th, "written" if written else "forgotten")
                if written and now:
                    renewed[th] = now

        async with self._lock:
            await asyncio.gather(*(write(th) for th in due))
        for th in renewed.keys() - set(tally.pending()):
            del renewed[th]  # its report retired; serving the town hall again starts a new one, written at once
