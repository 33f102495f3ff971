"""Train families of texts written out in full by blind writers, for the text guard's corpus (``data/written_families.yaml``).

The thirteenth cut's training texts were written by six helpers who saw nothing of bastion (no corpus, rules,
classifier, figures, eval split or eval-b), from a brief with the category definitions (see DATA.md). This script
reads their JSON-lines files, drops what the pre-registration (``benchmarks/preregistered/text_guard.txt``) says to
drop, and writes the rest as train families whose texts are used as written:

    .venv/bin/python benchmarks/written_families.py T1.jsonl T2.jsonl ...   # data/written_families.yaml

Dropped, in this order, each text once, with the reason: an exact duplicate of an earlier written text; a text
sharing a five-word run with the eval split's own material (templates, slot values, pools) or with any text of
eval-b (``benchmarks/heldout/text_guard_eval_b.jsonl``); a text whose sentence embedding (all-MiniLM-L6-v2 as
published, no adapter; its first window) has a cosine similarity of at least :data:`SIMILARITY` with that of any
eval-split or eval-b text (a near-paraphrase five-word runs miss: the writers are the same kind of writer as
eval-b's). What was dropped, with the text and the nearest held-out text, goes to
``benchmarks/results/written_families.json``; the writers' files are the kept texts and the dropped ones together.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bastion.core.errors import InputError
from bastion.defenses.text.corpus import (
    OVERT_CATEGORIES,
    Example,
    assemble,
    read_labelled_jsonl,
    split_examples,
    template_word_runs,
    word_runs,
)

ROOT = Path(__file__).resolve().parent
EVAL_B = ROOT / "heldout" / "text_guard_eval_b.jsonl"
OUT = ROOT.parent / "src" / "bastion" / "defenses" / "text" / "data" / "written_families.yaml"
REPORT = ROOT / "results" / "written_families.json"
#: Cosine similarity of sentence embeddings at or above which a written text counts as a near-paraphrase of a
#: held-out one (fixed in the thirteenth cut's pre-registration).
SIMILARITY = 0.85
CATEGORIES = (*OVERT_CATEGORIES, "benign", "benign-trigger")
HEADER = """\
# Train families of texts written out in full for bastion (Apache-2.0) by six writers who saw nothing of bastion's
# corpus, rules, classifier or evaluation sets (the thirteenth cut; see DATA.md). Each family's texts are used as
# written. Texts sharing wording with, or paraphrasing, a held-out text were dropped first. Written by
# benchmarks/written_families.py; do not edit by hand.
"""


def read_written(paths: Sequence[Path]) -> list[Example]:
    """The writers' texts, in file order.

    Raises:
        InputError: a file is missing or malformed, or a text's category or label is not one a train family may
            hold (the message names the file and family).
    """
    examples = [example for path in paths for example in read_labelled_jsonl(path)]
    for example in examples:
        if example.category not in CATEGORIES or example.label != (example.category in OVERT_CATEGORIES):
            raise InputError(f"{example.source}, family {example.family!r}: category {example.category!r} with label "
                             f"{example.label}; expected one of {', '.join(CATEGORIES)}, the first four labelled 1")
        if not example.family:
            raise InputError(f"{example.source}: a text without a family; every written text names its family")
    return examples


def decontaminate(written: Sequence[Example], held_out: Sequence[str], held_out_runs: set[str],
                  similarity: np.ndarray) -> tuple[list[Example], list[dict[str, Any]]]:
    """The written texts kept, and a record of each dropped one with its reason.

    ``similarity`` ``(len(written), len(held_out))`` holds the cosine similarities of their embeddings.
    """
    kept: list[Example] = []
    dropped: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, example in enumerate(written):
        nearest = int(similarity[index].argmax())
        shared = [run for run in word_runs(example.text) if run in held_out_runs]
        if example.text in seen:
            reason = "duplicate of an earlier written text"
        elif shared:
            reason = f"shares the five-word run {shared[0]!r} with held-out material"
        elif similarity[index, nearest] >= SIMILARITY:
            reason = f"cosine similarity {similarity[index, nearest]:.3f} with a held-out text"
        else:
            kept.append(example)
            seen.add(example.text)
            continue
        seen.add(example.text)
        dropped.append({"family": example.family, "category": example.category, "text": example.text,
                        "reason": reason, "nearest_held_out": held_out[nearest],
                        "similarity": round(float(similarity[index, nearest]), 4)})
    return kept, dropped


def families(kept: Sequence[Example]) -> list[dict[str, Any]]:
    """Train families of ``kept``, in the order their first text came."""
    built: dict[str, dict[str, Any]] = {}
    for example in kept:
        family = built.setdefault(example.family, {
            "name": example.family, "category": example.category, "split": "train",
            "source": example.source, "licence": "Apache-2.0", "texts": []})
        if family["category"] != example.category:
            raise InputError(f"family {example.family!r} holds texts of {family['category']!r} and "
                             f"{example.category!r}; give each category its own family")
        family["texts"].append(example.text)
    return list(built.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("written", type=Path, nargs="+", help="the writers' JSON-lines files")
    parser.add_argument("--out", type=Path, default=OUT, help="the families file to write")
    parser.add_argument("--report", type=Path, default=REPORT, help="what was dropped and why (JSON)")
    args = parser.parse_args(argv)
    try:
        written = read_written(args.written)
        eval_b = [example.text for example in read_labelled_jsonl(EVAL_B)]
    except InputError as error:
        parser.exit(2, f"error: {error}\n")
    from bastion.defenses.text.embedding import SentenceEncoder

    if not OUT.exists():  # the corpus reads every family file; a first run starts from no written families
        OUT.write_text(HEADER + "families: []\n", encoding="utf-8")
    held_out = [example.text for example in split_examples(assemble(), "eval")] + eval_b
    held_out_runs = set(template_word_runs()["eval"]) | {run for text in eval_b for run in word_runs(text)}
    encoder = SentenceEncoder()
    similarity = encoder.encode([example.text for example in written]) @ encoder.encode(held_out).T
    kept, dropped = decontaminate(written, held_out, held_out_runs, similarity)
    built = families(kept)
    body = yaml.safe_dump({"families": built}, sort_keys=False, allow_unicode=True, width=120)
    args.out.write_text(HEADER + body, encoding="utf-8")
    summary = {"written": len(written), "kept": len(kept), "similarity_bound": SIMILARITY,
               "kept_by_category": Counter(example.category for example in kept),
               "dropped_by_category": Counter(record["category"] for record in dropped),
               "families": {family["name"]: len(family["texts"]) for family in built}, "dropped": dropped}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({key: summary[key] for key in ("written", "kept", "kept_by_category", "dropped_by_category")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
