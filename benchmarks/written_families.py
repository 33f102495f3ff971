"""Train families of texts written out in full by blind writers (the text guard's ``data/written_families.yaml``).

The thirteenth cut's training texts were written by six helpers (T1-T6) who saw nothing of bastion (no corpus,
rules, classifier, figures, eval split or eval-b), from a brief with the category definitions (see DATA.md); the
fifteenth cut's by five more (R1-R5), with the first calibration set's 428 prompts (C0), retired as a calibration
set in the fourteenth cut. Their files are ``benchmarks/written/``. This script drops what the pre-registration
(``benchmarks/preregistered/text_guard.txt``) says to drop and writes the rest as train families whose texts are
used as written:

    .venv/bin/python benchmarks/written_families.py      # data/written_families.yaml, results/written_families.json

Dropped, in this order, each text once, with the reason: an exact duplicate of an earlier written text or of a
text of bastion's other train families; a text sharing a five-word run with the eval split's own material
(templates, slot values, pools) or with any text of eval-b (``benchmarks/heldout/text_guard_eval_b.jsonl``); a text
whose sentence embedding (all-MiniLM-L6-v2 as published, no adapter; its first window) has a cosine similarity of at
least :data:`SIMILARITY` with that of any eval-split or eval-b text (a near-paraphrase five-word runs miss: the
writers are the same kind of writer as eval-b's), or with that of any text of the calibration set
(``data/calibration_trigger.yaml``: a threshold calibrated on paraphrases of training texts would sit too low). The
report lists each dropped text with its writer, reason, and the held-out family it collided with (by name: the
report does not repeat held-out texts). A test rebuilds the shipped file from the writers' files.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.text.calibration import CALIBRATION_FILE, shipped_calibration_texts
from bastion.defenses.text.corpus import (
    FAMILY_FILES,
    OVERT_CATEGORIES,
    Example,
    _families_spec,
    assemble,
    read_labelled_jsonl,
    split_examples,
    template_word_runs,
    word_runs,
    write_family_file,
)

ROOT = Path(__file__).resolve().parent
WRITTEN = (*(ROOT / "written" / f"T{writer}.jsonl" for writer in range(1, 7)),
           *(ROOT / "written" / f"R{writer}.jsonl" for writer in range(1, 6)), ROOT / "written" / "C0.jsonl")
EVAL_B = ROOT / "heldout" / "text_guard_eval_b.jsonl"
OUT = ROOT.parent / "src" / "bastion" / "defenses" / "text" / "data" / "written_families.yaml"
REPORT = ROOT / "results" / "written_families.json"
#: The family files the held-out material comes from: all but this script's own (the eval split needs no other).
HELD_OUT_FILES = tuple(name for name in FAMILY_FILES if name != OUT.name)
#: Cosine similarity of sentence embeddings at or above which a written text counts as a near-paraphrase of a
#: held-out one (fixed in the thirteenth cut's pre-registration).
SIMILARITY = 0.85
CATEGORIES = (*OVERT_CATEGORIES, "benign", "benign-trigger")
LICENCE = "Apache-2.0"
HEADER = """\
# Train families of texts written out in full for bastion (Apache-2.0) by writers who saw nothing of bastion's
# corpus, rules, classifier or evaluation sets (the thirteenth and fifteenth cuts), and the first calibration set's
# prompts (C0; see DATA.md). Each family's texts are used as written. Texts sharing wording with, or paraphrasing, a
# held-out text, and paraphrases of calibration texts, were dropped first. Written by
# benchmarks/written_families.py from benchmarks/written/; do not edit by hand.
"""


def read_written(paths: Sequence[Path]) -> list[Example]:
    """The writers' texts, in file order, each a train text of its family.

    Raises:
        InputError: a file is missing or malformed; a record has no family or source, a licence other than
            Apache-2.0, or a category and label a train family may not hold; a family holds two categories, comes
            from two files, or has the name of one of bastion's other families (the message names file and record).
    """
    taken = {family["name"] for family in _families_spec(HELD_OUT_FILES)["families"]}
    family_home: dict[str, tuple[str, str]] = {}
    examples: list[Example] = []
    for path in paths:
        for number, example in enumerate(read_labelled_jsonl(path), start=1):
            where = f"{path.name} record {number} (family {example.family!r})"
            if not example.family or example.source.startswith(path.name):  # no "family" or no "source" given
                raise InputError(f"{where}: every written text names its \"family\" and its \"source\" (the writer)")
            if example.category not in CATEGORIES or example.label != (example.category in OVERT_CATEGORIES):
                raise InputError(f"{where}: category {example.category!r} with label {example.label}; expected one "
                                 f"of {', '.join(CATEGORIES)}, the first four labelled 1 (injection), the others 0")
            if example.licence not in (LICENCE, "unknown"):
                raise InputError(f"{where}: licence {example.licence!r}; only {LICENCE} texts are taken")
            if example.family in taken:
                raise InputError(f"{where}: bastion's corpus already has a family of that name; rename it")
            home = family_home.setdefault(example.family, (path.name, example.category))
            if home != (path.name, example.category):
                raise InputError(f"{where}: the family is {home[1]} in {home[0]}; give each category and writer "
                                 "families of its own")
            examples.append(Example(text=example.text, label=example.label, category=example.category,
                                    family=example.family, split="train", source=example.source, licence=LICENCE))
    return examples


def held_out_runs(corpus: Sequence[Example]) -> tuple[dict[str, str], list[str], list[str]]:
    """The held-out material: five-word run -> where it comes from (an eval family or pool, or an eval-b family),
    and the held-out texts (the eval split's, then eval-b's) with their families. ``corpus`` is
    ``assemble(files=HELD_OUT_FILES)``, passed in by a caller that needs its train split too."""
    eval_split = split_examples(corpus, "eval")
    eval_b = read_labelled_jsonl(EVAL_B)
    runs = dict(template_word_runs(HELD_OUT_FILES)["eval"])
    for example in eval_b:
        for run in word_runs(example.text):
            runs.setdefault(run, f"eval-b {example.family}")
    texts = [example.text for example in (*eval_split, *eval_b)]
    return runs, texts, [example.family for example in eval_split] + [f"eval-b {e.family}" for e in eval_b]


def decontaminate(written: Sequence[Example], runs: dict[str, str], similarity: np.ndarray,
                  held_out_families: Sequence[str], others: Sequence[tuple[str, str]] = (),
                  taken: frozenset[str] = frozenset()) -> tuple[list[Example], list[dict[str, Any]]]:
    """The written texts kept, and a record of each dropped one with its reason.

    ``runs`` maps each held-out five-word run to where it comes from; ``similarity`` ``(len(written), H + O)`` holds
    the cosine similarities of the written texts' embeddings with those of the ``H`` held-out texts, whose families
    ``held_out_families`` names, then of ``O`` other texts kept apart, each named by ``others`` as ``(kind, family)``
    (``("a calibration", ...)`` for training texts, ``("a train", ...)`` for a calibration set); ``taken`` holds
    texts already in use elsewhere (the other train families'), dropped as duplicates.
    """
    kinds = [*(("a held-out", family) for family in held_out_families), *others]
    kept: list[Example] = []
    dropped: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, example in enumerate(written):
        nearest = int(similarity[index].argmax())
        shared = [run for run in word_runs(example.text) if run in runs]
        record: dict[str, Any] = {"source": example.source, "family": example.family, "category": example.category,
                                  "text": example.text}
        if example.text in seen:
            record["reason"] = "duplicate of an earlier written text"
        elif example.text in taken:
            record["reason"] = "duplicate of a text of another train family"
        elif shared:
            record.update(reason=f"shares the five-word run {shared[0]!r} with held-out material",
                          collides_with=runs[shared[0]])
        elif similarity[index, nearest] >= SIMILARITY:
            kind, family = kinds[nearest]
            record.update(reason=f"cosine similarity {similarity[index, nearest]:.3f} with {kind} text",
                          collides_with=family)
        else:
            kept.append(example)
        seen.add(example.text)
        if "reason" in record:
            dropped.append(record)
    return kept, dropped


def families(kept: Sequence[Example]) -> list[dict[str, Any]]:
    """Train families of ``kept`` (checked by :func:`read_written`), in the order their first text came."""
    built: dict[str, dict[str, Any]] = {}
    for example in kept:
        built.setdefault(example.family, {"name": example.family, "category": example.category, "split": "train",
                                          "source": example.source, "licence": LICENCE, "texts": []})
        built[example.family]["texts"].append(example.text)
    return list(built.values())


def build(paths: Sequence[Path], out: Path, report: Path) -> dict[str, Any]:
    """Read, decontaminate and write: ``out`` (the families, YAML) and ``report`` (JSON, returned)."""
    from bastion.defenses.text.embedding import SentenceEncoder

    written = read_written(paths)
    corpus = assemble(files=HELD_OUT_FILES)
    runs, held_out, held_out_families = held_out_runs(corpus)
    calibration = shipped_calibration_texts()
    encoder = SentenceEncoder()
    others = encoder.encode([*held_out, *calibration])
    similarity = encoder.encode([example.text for example in written]) @ others.T
    train = frozenset(example.text for example in split_examples(corpus, "train"))
    kept, dropped = decontaminate(written, runs, similarity, held_out_families,
                                  [("a calibration", CALIBRATION_FILE)] * len(calibration), train)
    counts = {"kept_by_category": Counter(example.category for example in kept),
              "dropped_by_category": Counter(record["category"] for record in dropped),
              "dropped_by_reason": Counter(record["reason"].split(" ")[0] for record in dropped)}
    return write_outputs(out, HEADER, families(kept), report, len(written), dropped, counts)


def write_outputs(out: Path, header: str, built: Sequence[dict[str, Any]], report: Path, written: int,
                  dropped: list[dict[str, Any]], counts: dict[str, Counter[str]]) -> dict[str, Any]:
    """Write a converter's outputs (this script's and ``calibration_set.py``'s): the families ``built`` to ``out``
    under ``header``, and to ``report`` (JSON) the summary it returns: how many of the ``written`` texts were kept,
    the converter's ``counts``, each family's size and the ``dropped`` records."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_family_file(out, built, header)
    summary = {"written": written, "kept": sum(len(family["texts"]) for family in built),
               "similarity_bound": SIMILARITY, **counts,
               "families": {family["name"]: len(family["texts"]) for family in built}, "dropped": dropped}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def converter_main(argv: list[str] | None, build: Callable[[Sequence[Path], Path, Path], dict[str, Any]], *,
                   description: str, inputs: Sequence[Path], inputs_help: str, out: Path, out_help: str,
                   report: Path, keys: Sequence[str]) -> int:
    """The command line of a converter of writers' files (this script's and ``calibration_set.py``'s): the files,
    ``--out`` and ``--report``; prints the summary's ``keys`` as JSON, or exits 2 with the error of a bad input."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("written", type=Path, nargs="*", default=list(inputs), help=inputs_help)
    parser.add_argument("--out", type=Path, default=out, help=out_help)
    parser.add_argument("--report", type=Path, default=report, help="what was dropped and why (JSON)")
    args = parser.parse_args(argv)
    try:
        summary = build(args.written, args.out, args.report)
    except InputError as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps({key: summary[key] for key in keys}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return converter_main(argv, build, description=__doc__.splitlines()[0], inputs=WRITTEN,
                          inputs_help="the writers' JSON-lines files (default: benchmarks/written/T*, R* and C0)",
                          out=OUT, out_help="the families file to write", report=REPORT,
                          keys=("written", "kept", "kept_by_category", "dropped_by_category", "dropped_by_reason"))


if __name__ == "__main__":
    raise SystemExit(main())
