"""The text guard's calibration set (``data/calibration_trigger.yaml``), from the texts of blind writers.

bastion's classifier threshold is calibrated on benign prompts full of trigger words (see
``bastion.defenses.text.calibration``). Since the fourteenth cut those prompts are written by five helpers (K1-K5)
who saw nothing of bastion (no corpus, rules, classifier, figures, eval split or eval-b), from a brief with the
category definitions (see DATA.md); their files are ``benchmarks/calibration/K*.jsonl``. This script drops what the
pre-registration (``benchmarks/preregistered/text_guard.txt``) says to drop and writes the rest:

    .venv/bin/python benchmarks/calibration_set.py   # data/calibration_trigger.yaml, results/calibration_set.json

Dropped, in this order, each text once, with the reason: an exact duplicate of an earlier text; a text sharing a
five-word run with the eval split's own material or any text of eval-b; a text whose sentence embedding
(all-MiniLM-L6-v2 as published, no adapter) has a cosine similarity of at least ``SIMILARITY`` (0.85) with that of
any eval-split, eval-b **or train-split** text. The last keeps near-paraphrases of training texts out, which would
make the set easier than fresh traffic; five-word runs shared with training texts stay, as fresh traffic shares
everyday phrasing with them. A test rebuilds the shipped file from the writers' files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from written_families import (  # this script's folder is on sys.path
    HELD_OUT_FILES,
    LICENCE,
    converter_main,
    decontaminate,
    held_out_runs,
    read_written,
    write_outputs,
)

from bastion.core.errors import InputError
from bastion.defenses.text.corpus import Example, assemble, split_examples

ROOT = Path(__file__).resolve().parent
WRITERS = tuple(ROOT / "calibration" / f"K{writer}.jsonl" for writer in range(1, 6))
OUT = ROOT.parent / "src" / "bastion" / "defenses" / "text" / "data" / "calibration_trigger.yaml"
REPORT = ROOT / "results" / "calibration_set.json"
HEADER = """\
# Benign prompts full of trigger words, written for bastion (Apache-2.0) by writers who saw nothing of bastion's
# corpus, rules, classifier or evaluation sets: the calibration set of the text guard's threshold (the fourteenth
# cut; see DATA.md). Never trained on. Texts sharing wording with a held-out text, or paraphrasing a held-out or a
# train text, were dropped first. Written by benchmarks/calibration_set.py from benchmarks/calibration/; do not
# edit by hand.
"""


def read_calibration(paths: Sequence[Path]) -> list[Example]:
    """The writers' texts, in file order, checked as the written train families' are
    (:func:`written_families.read_written`), and each benign-trigger.

    Raises:
        InputError: what ``read_written`` refuses, or a text of another category (the message names file and
            record).
    """
    examples = read_written(paths)
    for example in examples:
        if example.category != "benign-trigger":
            raise InputError(f"{example.source}, family {example.family!r}: category {example.category!r}; a "
                             "calibration set holds benign-trigger prompts only")
    return examples


def families(kept: Sequence[Example]) -> list[dict[str, Any]]:
    """The calibration families of ``kept``, in the order their first text came."""
    built: dict[str, dict[str, Any]] = {}
    for example in kept:
        built.setdefault(example.family, {"name": example.family, "source": example.source, "licence": LICENCE,
                                          "texts": []})["texts"].append(example.text)
    return list(built.values())


def reason_kind(reason: str) -> str:
    """A drop reason of :func:`written_families.decontaminate` in one word or two, for the report's counts."""
    if reason.startswith("cosine"):
        return "near-train" if reason.endswith("a train text") else "near-held-out"
    return reason.split(" ")[0]  # "duplicate" or "shares" (a five-word run)


def build(paths: Sequence[Path], out: Path, report: Path) -> dict[str, Any]:
    """Read, decontaminate and write: ``out`` (the families, YAML) and ``report`` (JSON, returned)."""
    from bastion.defenses.text.embedding import SentenceEncoder

    written = read_calibration(paths)
    runs, held_out, held_out_families = held_out_runs(assemble(files=HELD_OUT_FILES))
    train = split_examples(assemble(), "train")
    encoder = SentenceEncoder()
    others = encoder.encode([*held_out, *(example.text for example in train)])
    similarity = encoder.encode([example.text for example in written]) @ others.T
    kept, dropped = decontaminate(written, runs, similarity, held_out_families,
                                  [("a train", f"train {example.family}") for example in train])
    counts = {"kept_by_writer": Counter(example.source.rsplit(" ", 1)[-1] for example in kept),
              "dropped_by_reason": Counter(reason_kind(record["reason"]) for record in dropped)}
    return write_outputs(out, HEADER, families(kept), report, len(written), dropped, counts)


def main(argv: list[str] | None = None) -> int:
    return converter_main(argv, build, description=__doc__.splitlines()[0], inputs=WRITERS,
                          inputs_help="the writers' JSON-lines files (default: benchmarks/calibration/K1 ... K5)",
                          out=OUT, out_help="the calibration set to write (YAML)", report=REPORT,
                          keys=("written", "kept", "kept_by_writer", "dropped_by_reason"))


if __name__ == "__main__":
    raise SystemExit(main())
