"""Names of the MITRE ATLAS and OWASP ML Top 10 entries a scan report cites.

Only the ids bastion's scans (evasion, privacy, extraction) map to are named here; an unknown id is still shown, with
a neutral name, so a record written by a newer bastion renders without error.
"""

from __future__ import annotations

from dataclasses import dataclass

ATLAS_NAMES: dict[str, str] = {
    "AML.T0043": "Craft Adversarial Data",
    "AML.T0015": "Evade ML Model",
    "AML.T0024.000": "Infer Training Data Membership",
    "AML.T0024.001": "Invert ML Model",
    "AML.T0024.002": "Extract ML Model",
}

OWASP_NAMES: dict[str, str] = {
    "ML01:2023": "Input Manipulation Attack",
    "ML03:2023": "Model Inversion Attack",
    "ML04:2023": "Membership Inference Attack",
    "ML05:2023": "Model Theft",
}

_UNKNOWN_NAME = "(name not known to this bastion version)"

#: What an evasion scan tests when the record does not say: used by SARIF rule tags.
DEFAULT_ATLAS_IDS: tuple[str, ...] = ("AML.T0043", "AML.T0015")
DEFAULT_OWASP_IDS: tuple[str, ...] = ("ML01:2023",)


@dataclass(frozen=True)
class TaxonomyEntry:
    """One cited id with the framework it comes from and its human name."""

    framework: str
    id: str
    name: str


def taxonomy_entries(atlas_ids: list[str], owasp_ids: list[str]) -> list[TaxonomyEntry]:
    """ATLAS then OWASP entries for the given ids, in the order the record lists them."""
    atlas = [
        TaxonomyEntry("MITRE ATLAS", item, ATLAS_NAMES.get(item, _UNKNOWN_NAME))
        for item in atlas_ids
    ]
    owasp = [
        TaxonomyEntry("OWASP ML Top 10", item, OWASP_NAMES.get(item, _UNKNOWN_NAME))
        for item in owasp_ids
    ]
    return atlas + owasp


def threat_ids(atlas_ids: list[str], owasp_ids: list[str]) -> list[str]:
    """Every id to tag a finding with; the evasion defaults when the record cites none."""
    return list(atlas_ids or DEFAULT_ATLAS_IDS) + list(owasp_ids or DEFAULT_OWASP_IDS)
