"""Rebuild ``data/cps_occupation_soc_crosswalk.csv``: CPS detailed occupations to SOC codes.

Usage: ``python -m calibration.build_crosswalk``

The CPS tables name occupations by their Census 2018 titles, without codes. A CPS row is
paired with the OEWS row (any SOC level) whose title is the same after normalisation
(case, punctuation, "and"); the rows listed in ``LISTED`` (titles that differ, and "Other
..." residual rows) are paired by hand. This is a title correspondence, not a BLS or Census
mapping. A code covers every detailed SOC code that starts with its prefix (major ``XX-``,
minor ``XX-X``, broad ``XX-XXX``); a detailed occupation takes its figures from the most
specific CPS rows that cover it (see ``calibration.occupations``).
"""

from __future__ import annotations

import re

import pandas as pd

from calibration import tables

# CPS title -> SOC codes, where titles differ or a CPS row is a residual ("Other ...") of a
# broad, minor or major SOC group (more specific rows take their own codes first).
LISTED: dict[str, tuple[str, ...]] = {
    "Buyers and purchasing agents, farm products": ("13-1020",),
    "Wholesale and retail buyers, except farm products": ("13-1020",),
    "Purchasing agents, except wholesale, retail, and farm products": ("13-1020",),
    "Other financial specialists": ("13-2000",),
    "Database administrators and architects": ("15-1242", "15-1243"),
    "Other mathematical science occupations": ("15-2000",),
    "Other drafters": ("17-3010",),
    "Other engineering technologists and technicians, except drafters": ("17-3020",),
    "Geoscientists and hydrologists, except geographers": ("19-2042", "19-2043"),
    "Other psychologists": ("19-3030",),
    "Other life, physical, and social science technicians": ("19-4000",),
    "Substance abuse and behavioral disorder counselors": ("21-1018",),
    "Mental health counselors": ("21-1018",),
    "Other community and social service specialists": ("21-1090",),
    "Other educational instruction and library workers": ("25-9000",),
    "Other designers": ("27-1020",),
    "Other physicians": ("29-1210",),
    "Nuclear medicine technologists and medical dosimetrists": ("29-2033", "29-2036"),
    "Dietetic technicians and ophthalmic medical technicians": ("29-2051", "29-2057"),
    "Home health aides": ("31-1120",),
    "Personal care aides": ("31-1120",),
    "Orderlies and psychiatric aides": ("31-1132", "31-1133"),
    "Other healthcare support workers": ("31-9090",),
    "Janitors and building cleaners": ("37-2011", "37-2019"),
    "Other entertainment attendants and related workers": ("39-3090",),
    "Industrial and refractory machinery mechanics": ("49-9041", "49-9045"),
    "Other installation, maintenance, and repair workers": ("49-9000",),
    "Other assemblers and fabricators": ("51-2000",),
    "Other metal workers and plastic workers": ("51-4000",),
    "Other production workers": ("51-9000",),
    "Supervisors of transportation and material moving workers": ("53-1040",),
    "Other material moving workers": ("53-7000",),
}


def normalise(title: str) -> str:
    """Lower case, no punctuation, no 'and': 'Cooks, Restaurant' -> 'cooks restaurant'."""
    words = re.sub(r"[^a-z0-9]+", " ", str(title).lower()).split()
    return " ".join(w for w in words if w != "and")


def crosswalk(cps: pd.DataFrame, oews: pd.DataFrame) -> pd.DataFrame:
    """Pairs (cps_occupation, soc_code, method) for every CPS row below the major groups."""
    by_title = {}
    for level in ("major", "minor", "broad", "detailed"):  # a detailed title wins a tie
        rows = oews[oews["soc_level"] == level]
        by_title.update(zip(rows["occupation_title"].map(normalise), rows["soc_code"]))
    pairs = []
    for title in cps.loc[cps["level"] == "occupation", "cps_occupation"]:
        if title in LISTED:
            pairs += [(title, code, "listed") for code in LISTED[title]]
        elif normalise(title) in by_title:
            pairs.append((title, by_title[normalise(title)], "title"))
    return pd.DataFrame(pairs, columns=["cps_occupation", "soc_code", "method"])


def main() -> None:
    cps = tables.cps_detailed()
    oews = tables.read_table(tables.OEWS_ALL, ("soc_code", "occupation_title", "soc_level"))
    out = crosswalk(cps, oews)
    missing = sorted(set(LISTED) - set(cps["cps_occupation"]))
    if missing:
        raise SystemExit(f"listed CPS titles not in the CPS table: {missing}")
    out.to_csv(tables.DATA_DIR / tables.CROSSWALK, index=False)
    print(f"wrote {len(out)} pairs for {out['cps_occupation'].nunique()} CPS occupations")


if __name__ == "__main__":
    main()
