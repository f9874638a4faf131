"""A node's roll-up writes: once per presence interval, what its `UnitTally` counted, summed up the region tree,
one write per town hall with changes, all town halls concurrently (pipelined)."""

from __future__ import annotations

import asyncio
import logging

from jansamvad.regions_http import RegionDirectory
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

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.write_once()

    async def write_once(self) -> None:
        tally = self._tally
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

        async with self._lock:
            await asyncio.gather(*(write(th) for th in tally.pending()))
