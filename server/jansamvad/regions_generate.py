"""A generated Bihar tree below the real districts, for tests and benchmarks: realistic counts, invented names.

Bihar has 243 assembly constituencies, ~8,400 gram panchayats and ~1 lakh booths; this spreads as many over the
shipped 38 districts (regions_data/bihar_districts.csv). Every generated name ends in "(generated)" / "(जनरेटेड)":
they are not real places. Deterministic for a given seed.

    python -m jansamvad.regions_generate [--booths 100000] > bihar-generated.csv
"""

from __future__ import annotations

import argparse
import random
import sys

from jansamvad.regions import RegionTree, Unit, bihar_districts, write_csv

ACS = 243
PANCHAYATS = 8_400
BOOTHS = 100_000
GENERATED_HI = "(जनरेटेड)"
GENERATED_EN = "(generated)"

# Common parts of village names in Bihar, in both scripts: a first part and an ending.
_FIRST = [
    ("राम", "Ram"),
    ("सीता", "Sita"),
    ("हरि", "Hari"),
    ("शिव", "Shiv"),
    ("लक्ष्मी", "Lakshmi"),
    ("मोहन", "Mohan"),
    ("बेला", "Bela"),
    ("चंद", "Chand"),
    ("सोन", "Son"),
    ("माधो", "Madho"),
    ("कमल", "Kamal"),
    ("गोविंद", "Govind"),
    ("नारायण", "Narayan"),
    ("महेश", "Mahesh"),
    ("बसंत", "Basant"),
    ("फ़तेह", "Fateh"),
    ("ज़फ़र", "Zafar"),
    ("रसूल", "Rasul"),
    ("कल्याण", "Kalyan"),
    ("धर्म", "Dharm"),
]
_ENDING = [
    ("पुर", "pur"),
    ("गंज", "ganj"),
    ("नगर", "nagar"),
    ("टोला", "tola"),
    ("डीह", "dih"),
    ("पट्टी", "patti"),
    ("चक", "chak"),
    ("बाग़", "bagh"),
    ("बाड़ी", "bari"),
    ("सराय", "sarai"),
]


def _place(rng: random.Random) -> tuple[str, str]:
    (hi1, en1), (hi2, en2) = rng.choice(_FIRST), rng.choice(_ENDING)
    return hi1 + hi2, en1 + en2


def _spread(total: int, parents: list[str], rng: random.Random) -> list[str]:
    """`total` parent codes, every parent at least once, the rest at random (uneven, like real counts)."""
    assigned = list(parents)
    assigned += [rng.choice(parents) for _ in range(total - len(parents))]
    position = {code: i for i, code in enumerate(parents)}
    assigned.sort(key=position.__getitem__)
    return assigned


def generate(*, acs: int = ACS, panchayats: int = PANCHAYATS, booths: int = BOOTHS, seed: int = 16) -> RegionTree:
    rng = random.Random(seed)
    base = bihar_districts()
    units = list(base.units.values())
    districts = [u.code for u in units if u.level == "district"]
    index: dict[str, int] = {}

    def number(parent: str) -> int:
        index[parent] = index.get(parent, 0) + 1
        return index[parent]

    ac_codes = []
    for n, district in enumerate(_spread(acs, districts, rng), start=1):
        hi, en = _place(rng)
        code = f"BR-AC{n:03d}"
        units.append(Unit(code, district, "ac", f"{hi} विधानसभा {GENERATED_HI}", f"{en} AC {GENERATED_EN}"))
        ac_codes.append(code)
    p_codes = []
    for n, ac in enumerate(_spread(panchayats, ac_codes, rng), start=1):
        hi, en = _place(rng)
        code = f"BR-P{n:04d}"
        units.append(Unit(code, ac, "panchayat", f"{hi} पंचायत {GENERATED_HI}", f"{en} panchayat {GENERATED_EN}"))
        p_codes.append(code)
    p_names = {u.code: u for u in units if u.level == "panchayat"}
    for n, panchayat in enumerate(_spread(booths, p_codes, rng), start=1):
        k = number(panchayat)
        parent = p_names[panchayat]
        hi_place = parent.name_hi.split(" ")[0]
        en_place = parent.name_en.split(" ")[0]
        units.append(
            Unit(
                f"BR-B{n:06d}",
                panchayat,
                "booth",
                f"{hi_place} बूथ {k} {GENERATED_HI}",
                f"{en_place} booth {k} {GENERATED_EN}",
            )
        )
    return RegionTree(base.levels, units)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acs", type=int, default=ACS)
    parser.add_argument("--panchayats", type=int, default=PANCHAYATS)
    parser.add_argument("--booths", type=int, default=BOOTHS)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    tree = generate(acs=args.acs, panchayats=args.panchayats, booths=args.booths, seed=args.seed)
    sys.stdout.write(write_csv(tree))


if __name__ == "__main__":
    main()
