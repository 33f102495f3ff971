"""Padding against the text guard: short overt injections, alone and after one benign paragraph that takes them past
the 256 characters over which the classifier scores a text by its pieces (and over which ``--long-threshold``
applies).

    .venv/bin/python benchmarks/text_guard_padding.py        # benchmarks/results/text_guard_padding.json

The injections are the first ``--count`` instruction-override and prompt-extraction texts under 200 characters of
the eval split of bastion's corpus; the paragraph (:data:`PADDING`, 241 characters, about a team meeting) is
placed before each, with a blank line. Each is screened by the whole guard with one threshold (the default) and
with the long-text threshold the shipped classifier's training recorded (``--long-threshold`` to give another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from bastion import __version__
from bastion.core.errors import InputError
from bastion.defenses.text.classifier import DEFAULT_FILE, load_default
from bastion.defenses.text.corpus import assemble, split_examples
from bastion.defenses.text.guard import PromptGuard, check_threshold

ROOT = Path(__file__).resolve().parent
PADDING = ("Our team meeting moved to Thursday at ten, in the small room on the third floor. Please bring the draft "
           "budget, the hiring plan and any notes from last week's call with the supplier, so we can agree on next "
           "steps before the end of the month.")
CATEGORIES = ("instruction-override", "prompt-extraction")
SHORTER_THAN = 200


def injections(count: int, seed: int = 0) -> list[str]:
    """The first ``count`` eval-split injections of :data:`CATEGORIES` shorter than :data:`SHORTER_THAN`."""
    chosen = [e.text for e in split_examples(assemble(seed), "eval")
              if e.category in CATEGORIES and e.label == 1 and len(e.text) < SHORTER_THAN]
    return chosen[:count]


def caught(guard: PromptGuard, texts: list[str]) -> int:
    return sum(guard.screen(text).flagged for text in texts)


def measure(count: int, long_threshold: float) -> dict[str, Any]:
    """Injections caught, alone and padded, with one threshold and with ``long_threshold`` for long texts."""
    plain = injections(count)
    padded = [PADDING + "\n\n" + text for text in plain]
    classifier = load_default()
    read_whole = [classifier.is_short(spans[:count])
                  for spans, count in map(classifier.piece_spans, plain + padded)]
    if not all(read_whole[:len(plain)]) or any(read_whole[len(plain):]):
        raise SystemExit("every injection alone must be read whole and every padded one by pieces")
    guards = {"one threshold (default)": PromptGuard(), "long threshold": PromptGuard(long_threshold=long_threshold)}
    return {"injections": len(plain), "padding_chars": len(PADDING), "long_threshold": long_threshold,
            "caught": {name: {"alone": caught(guard, plain), "padded": caught(guard, padded)}
                       for name, guard in guards.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=150, help="injections screened (default 150)")
    parser.add_argument("--long-threshold", type=float, default=None,
                        help="the long-text threshold to compare (default: the one the shipped classifier recorded)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "text_guard_padding.json")
    args = parser.parse_args()
    try:
        check_threshold("--long-threshold", args.long_threshold)  # PromptGuard's own check, before any work
    except InputError as error:
        parser.error(str(error))
    recorded = load_default().training_["cross_validation"]["long_texts"]["long_threshold"]
    shipped = resources.files("bastion.defenses.text").joinpath("data", DEFAULT_FILE).read_bytes()
    result = {"benchmark": "text_guard_padding", "created_at": datetime.now(timezone.utc).isoformat(),
              "bastion": __version__, "classifier_sha256": hashlib.sha256(shipped).hexdigest(),
              **measure(args.count, args.long_threshold if args.long_threshold is not None else recorded)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for name, row in result["caught"].items():
        print(f"{name:>24}: {row['alone']} of {result['injections']} alone, {row['padded']} padded")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
