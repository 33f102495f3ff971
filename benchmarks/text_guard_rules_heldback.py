"""Rules judged on held-back training families: the split, and the rule layer's rates on each part.

    # the ninth cut's rules (results/text_guard_rules_heldback.json), then the tenth's (..._seed1.json):
    .venv/bin/python benchmarks/text_guard_rules_heldback.py
    .venv/bin/python benchmarks/text_guard_rules_heldback.py --seed 1 --revisions 83182bc 094f875

The train split's template families are drawn at random (``random.Random(seed)``, a fifth of them, by family) into
the families a rule writer was shown and those held back to judge the rules once (the rule and its judgement:
``benchmarks/preregistered/text_guard.txt``). Each rules module named by ``--revisions`` (git revisions of
``src/bastion/defenses/text/rules.py``; ``WORKTREE`` for the file as it is) runs on both parts through the
guard's normalisation, and the share of texts any rule fires on is reported per category, with the overt
injections (the four overt categories) together and the benign texts' false-positive rates. Only the train
split is read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from bastion.defenses.text.corpus import Example, assemble, split_examples
from bastion.defenses.text.normalize import normalize

ROOT = Path(__file__).resolve().parent
RULES_PATH = "src/bastion/defenses/text/rules.py"
HELD_BACK_SHARE = 0.2
OVERT = ("instruction-override", "role-play", "prompt-extraction", "delimiter")
#: The revisions the pre-registration file names: the rules before the ninth cut, as judged, after the review's fixes,
#: after the mended slip.
REVISIONS = ("1c5331f", "afcae96", "ef73a6b", "a6df385", "WORKTREE")


def split_families(train: list[Example], seed: int = 0) -> tuple[list[str], list[str]]:
    """``(shown, held_back)``: the train families, a :data:`HELD_BACK_SHARE` of them held back, drawn by ``seed``."""
    families = sorted({example.family for example in train})
    random.Random(seed).shuffle(families)
    cut = round(len(families) * HELD_BACK_SHARE)
    return sorted(families[cut:]), sorted(families[:cut])


def rules_module(revision: str) -> tuple[ModuleType, str]:
    """The rules module at git ``revision`` (``WORKTREE``: the file as it is), and its SHA-256."""
    if revision == "WORKTREE":
        source = (ROOT.parent / RULES_PATH).read_text(encoding="utf-8")
    else:
        source = subprocess.run(["git", "show", f"{revision}:{RULES_PATH}"], cwd=ROOT.parent, check=True,
                                capture_output=True, text=True).stdout
    name = f"rules_{revision.replace('-', '_')}"
    module = ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"{revision}:{RULES_PATH}", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module, hashlib.sha256(source.encode()).hexdigest()


def rates(module: ModuleType, examples: list[Example]) -> dict[str, Any]:
    """Texts any of ``module``'s rules fires on, per category, overt injections together, and benign texts."""
    count: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    for example in examples:
        count[example.category] += 1
        fired[example.category] += bool(module.match_rules(normalize(example.text).views))
    overt = sum(fired[c] for c in OVERT), sum(count[c] for c in OVERT)
    other = (fired["benign"] + fired["benign-document"], count["benign"] + count["benign-document"])
    return {"categories": {c: {"fired": fired[c], "texts": count[c]} for c in sorted(count)},
            "overt": {"fired": overt[0], "texts": overt[1], "recall": overt[0] / overt[1]},
            "benign_trigger_fpr": fired["benign-trigger"] / max(count["benign-trigger"], 1),
            "benign_and_documents_fpr": other[0] / max(other[1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", nargs="+", default=list(REVISIONS))
    parser.add_argument("--seed", type=int, default=0,
                        help="the draw of held-back families: 0 judged the ninth cut's rules, 1 the tenth's")
    parser.add_argument("--out", type=Path, default=None,
                        help="default results/text_guard_rules_heldback.json (seed 0), ..._seed1.json (seed 1)")
    args = parser.parse_args()
    out = args.out or ROOT / "results" / ("text_guard_rules_heldback" + (f"_seed{args.seed}" if args.seed else "")
                                          + ".json")
    train = split_examples(assemble(0), "train")
    shown, held_back = split_families(train, args.seed)
    parts = {part: [e for e in train if e.family in families]
             for part, families in (("shown", set(shown)), ("held_back", set(held_back)))}
    measured = {}
    for revision in args.revisions:
        module, digest = rules_module(revision)
        measured[revision] = {"sha256": digest, **{part: rates(module, texts) for part, texts in parts.items()}}
        line = "  ".join(f"{part} overt {measured[revision][part]['overt']['recall']:.1%}, trigger FPR "
                         f"{measured[revision][part]['benign_trigger_fpr']:.1%}" for part in parts)
        print(f"{revision:9s} {line}")
    record = {"benchmark": "text_guard_rules_heldback", "created_at": datetime.now(timezone.utc).isoformat(),
              "split": {"seed": args.seed, "held_back_share": HELD_BACK_SHARE, "shown_families": shown,
                        "held_back_families": held_back, "texts": {k: len(v) for k, v in parts.items()}},
              "revisions": measured}
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
