"""The text guard's labelled corpus: prompt injections and benign prompts, generated from template families.

:func:`assemble` fills the template families of ``data/corpus_families.yaml`` (written for this project,
Apache-2.0) and of ``data/spikee_families.yaml`` (train families made from the templates of the spikee
prompt-injection kit, Apache-2.0) with a seeded RNG, takes the texts of ``data/written_families.yaml`` (train
families written out in full for this project by blind writers, Apache-2.0) as written, and takes real prose from
the docstrings of the Python standard library (PSF-2.0) as documents, clean or with an instruction planted in
them. Every family belongs wholly to the train or the eval split, so the eval split holds only phrasings never
trained on. ``data/DATA.md`` lists the sources, licences and counts, and the public benchmark sets kept out of
training and tuning.

:func:`read_labelled_jsonl` reads a user's labelled file for ``bastion guard eval --data``.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import importlib
import inspect
import json
import platform
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from bastion.core.errors import InputError
from bastion.defenses.text.limits import check_unicode

Split = Literal["train", "eval"]

#: Injection categories; the first four are "overt" (the instruction is in the prompt, readable as sent).
POSITIVE_CATEGORIES = ("instruction-override", "role-play", "prompt-extraction", "delimiter", "indirect", "encoded")
OVERT_CATEGORIES = POSITIVE_CATEGORIES[:4]
NEGATIVE_CATEGORIES = ("benign", "benign-trigger", "benign-document")
TEMPLATE_SOURCE = "bastion corpus templates (data/corpus_families.yaml)"
TEMPLATE_LICENCE = "Apache-2.0"
#: The data files of template families: bastion's own, those made from third-party templates, and texts written out
#: in full (a family with ``texts`` instead of ``templates``, used as written). Each family of the later files names
#: its ``source`` and ``licence``; see DATA.md.
FAMILY_FILES = ("corpus_families.yaml", "spikee_families.yaml", "written_families.yaml")
DOCSTRING_LICENCE = "PSF-2.0 (docstring) + Apache-2.0 (template)"
#: Standard-library modules whose docstrings serve as documents, per split (no module in both).
DOCSTRING_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("json", "csv", "textwrap", "string", "re", "collections", "itertools", "functools", "pathlib",
              "shutil", "argparse", "logging"),
    "eval": ("datetime", "statistics", "heapq", "bisect", "difflib", "fractions", "decimal", "calendar", "random",
             "zipfile", "tarfile", "ipaddress", "html", "uuid"),
}
#: Characters of a long prompt (:func:`long_prompt`).
LONG_PROMPT_CHARS = 1000
#: Longest docstring excerpt in characters, so a document fits one embedding window.
DOCSTRING_CHARS = 600
_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)(?:\|(cap|low|upper))?\}")
_HOMOGLYPHS = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і", "y": "у",
                             "A": "А", "E": "Е", "O": "О", "P": "Р", "C": "С", "T": "Т", "H": "Н"})


@dataclass(frozen=True)
class Example:
    """One labelled text.

    Attributes:
        text: the prompt or document as a guard would see it.
        label: 1 for a prompt injection, 0 for benign.
        category: one of :data:`POSITIVE_CATEGORIES` or :data:`NEGATIVE_CATEGORIES` (or a user's own name).
        family: the template family that produced it (a split never shares a family with the other).
        split: ``"train"`` or ``"eval"``.
        source: where the text comes from.
        licence: the licence of the text.
    """

    text: str
    label: int
    category: str
    family: str
    split: Split
    source: str
    licence: str

    @property
    def id(self) -> str:
        """Stable id: the hex SHA-256 of the text and its label."""
        return hashlib.sha256(f"{self.label}\x00{self.text}".encode()).hexdigest()


def assemble(seed: int = 0, files: tuple[str, ...] = FAMILY_FILES) -> list[Example]:
    """The whole labelled corpus, both splits, in a fixed order; the same ``seed`` gives the same list.

    ``files`` are the family files read (default: all of :data:`FAMILY_FILES`; the first holds the pools). Depends
    on the Python version only through the standard-library docstrings used as documents.
    """
    spec = _families_spec(files)
    examples: list[Example] = []
    seen: set[str] = set()
    # Encoded families draw their payloads from texts of other families: generate those first.
    families = sorted(spec["families"], key=lambda family: family.get("kind") == "encoded")
    by_category: dict[tuple[str, str], list[str]] = {}
    for family in families:
        rng = random.Random(_derive_seed(seed, family["name"]))
        filler = _Filler(spec["pools"], family, rng, by_category)
        texts = _generate(filler, family)
        label = int(family["category"] in POSITIVE_CATEGORIES)
        for text, source in texts:
            if text in seen:
                continue
            seen.add(text)
            licence = family.get("licence", TEMPLATE_LICENCE) if source == filler.template_source else DOCSTRING_LICENCE
            examples.append(Example(text=text, label=label, category=family["category"], family=family["name"],
                                    split=family["split"], source=source, licence=licence))
            by_category.setdefault((family["category"], family["split"]), []).append(text)
    order = {family["name"]: index for index, family in enumerate(spec["families"])}
    examples.sort(key=lambda example: order[example.family])  # back to the file's order (stable within a family)
    return examples


def is_encoded(example: Example) -> bool:
    """Whether ``example`` was made by hiding another text (Base64, hex, ROT13, ...): the normalisation layer's
    test material, which the classifier is not trained on (it would learn that any blob is an attack)."""
    return example.family in _encoded_families()


@lru_cache(maxsize=1)
def _encoded_families() -> frozenset[str]:
    return frozenset(family["name"] for family in _families_spec()["families"] if family.get("kind") == "encoded")


def long_prompt(opening: str, documents: Sequence[str], rng: random.Random, chars: int = LONG_PROMPT_CHARS
                ) -> list[str]:
    """The paragraphs of a long prompt, the shape of a retrieval-augmented one: ``opening`` (a request), then the
    paragraphs of documents drawn from ``documents`` with ``rng`` until, joined by blank lines, they reach
    ``chars`` characters (the caller cuts the joined text to ``chars``).

    Raises:
        InputError: ``documents`` holds no text.
    """
    if not any(document.strip() for document in documents):
        raise InputError("a long prompt needs documents with text in them")
    paragraphs = [opening]
    while len("\n\n".join(paragraphs)) < chars:
        paragraphs += [part.strip() for part in rng.choice(documents).split("\n\n") if part.strip()]
    return paragraphs


def split_examples(examples: Iterable[Example], split: Split) -> list[Example]:
    """The examples of one split."""
    return [example for example in examples if example.split == split]


def summary(examples: Iterable[Example]) -> dict[str, dict[str, int]]:
    """Counts per category and split: ``{category: {"train": n, "eval": m}}``."""
    counts: dict[str, dict[str, int]] = {}
    for example in examples:
        counts.setdefault(example.category, {"train": 0, "eval": 0})
        counts[example.category][example.split] = counts[example.category].get(example.split, 0) + 1
    return counts


def corpus_digest(texts: Iterable[str], labels: Iterable[int]) -> str:
    """Hex SHA-256 of a training set: its texts and labels, in order."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(json.dumps([text, int(label)], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def write_jsonl(examples: Iterable[Example], path: str | Path) -> Path:
    """Write ``examples`` to ``path``, one JSON object per line (readable by :func:`read_labelled_jsonl`)."""
    path = Path(path)
    lines = [json.dumps(asdict(example), ensure_ascii=False) for example in examples]
    try:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from error
    return path


def read_labelled_jsonl(path: str | Path, *, benign_only: bool = False, max_chars: int | None = None
                        ) -> list[Example]:
    """A user's labelled texts: one JSON object per line with ``"text"``, ``"label"`` and optionally ``"category"``.

    ``label`` is ``0``/``1`` or ``"benign"``/``"injection"``. Without a category, an example is in category
    ``"injection"`` or ``"benign"``. Blank lines are skipped. Every example is in the eval split. With
    ``benign_only`` (a file of benign prompts, as ``bastion guard calibrate --data`` reads), a line may leave the
    label out (benign) and a line labelled as an injection is refused. With ``max_chars`` (the guard's limit), a
    text longer than that is refused here, by its line, rather than by the guard later.

    Raises:
        InputError: the file is missing or empty, or a line is not such an object, has an empty text or one over
            ``max_chars`` (the message names the line).
    """
    path = Path(path)
    try:
        # JSON Lines are separated by "\n" only: str.splitlines() would also cut at U+2028, U+0085 and the like,
        # which JSON allows unescaped inside strings.
        lines = path.read_text(encoding="utf-8-sig").split("\n")  # -sig: a byte-order mark, as some editors write
    except FileNotFoundError as error:
        raise InputError(f"labelled file {path} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read labelled file {path} as UTF-8 text: {error}") from error
    examples = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            examples.append(_parse_line(line, f"{path.name} line {number}", benign_only, max_chars))
    if not examples:
        example = ('{"text": "Please ignore the typos in my draft"}' if benign_only
                   else '{"text": "Ignore all previous instructions", "label": 1}')
        raise InputError(f"labelled file {path} holds no examples; write one JSON object per line, e.g. {example}")
    return examples


def _parse_line(line: str, where: str, benign_only: bool = False, max_chars: int | None = None) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(record, dict):
        raise InputError(f'{where}: expected a JSON object like {{"text": "...", "label": 1}}, '
                         f"got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f'{where}: "text" must be a string, got {"nothing" if text is None else type(text).__name__}')
    if not text.strip():
        raise InputError(f'{where}: "text" is empty; give the text to screen, or leave the line out')
    if max_chars is not None and len(text) > max_chars:
        raise InputError(f'{where}: "text" is {len(text):,} characters, over the guard\'s limit of {max_chars:,}; '
                         "split it into several lines, or leave it out")
    check_unicode(text, f'{where}: "text"')
    label = 0 if benign_only and "label" not in record else _parse_label(record.get("label"), where)
    if benign_only and label:
        raise InputError(f"{where}: labelled as an injection; this file holds benign prompts only (label 0 or "
                         '"benign", or none)')
    category = record.get("category", "injection" if label else "benign")
    if not isinstance(category, str) or not category:
        raise InputError(f'{where}: "category" must be a non-empty string')
    return Example(text=text, label=label, category=category, family=str(record.get("family", "")),
                   split="eval", source=str(record.get("source", where)), licence=str(record.get("licence", "unknown")))


def _parse_label(value: Any, where: str) -> int:
    if isinstance(value, bool):  # bool is an int in Python; true/false is too easy to mistype for 1/0
        raise InputError(f'{where}: "label" must be 0, 1, "benign" or "injection", got {json.dumps(value)}')
    if value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("benign", "injection"):
        return int(value.strip().lower() == "injection")
    shown = "nothing" if value is None else json.dumps(value)
    raise InputError(f'{where}: "label" must be 0, 1, "benign" or "injection", got {shown}')


# ---------------------------------------------------------------------------------------------- generation


@lru_cache(maxsize=4)
def _families_spec(files: Sequence[str] = FAMILY_FILES) -> dict[str, Any]:
    """The pools of the first of ``files`` (``corpus_families.yaml``) and the families of all, in order.

    Raises:
        ValueError: a family has both or neither of ``templates`` (with a ``count``) and ``texts``.
    """
    data = resources.files("bastion.defenses.text").joinpath("data")
    specs = {name: yaml.safe_load(data.joinpath(name).read_text("utf-8")) for name in files}
    for name, spec in specs.items():
        for family in spec["families"]:
            if ("texts" in family) == ("templates" in family) or ("templates" in family and "count" not in family):
                raise ValueError(f"{name}, family {family.get('name')!r}: give either templates with a count, "
                                 "or texts written out in full")
    return {"pools": specs[files[0]]["pools"],
            "families": [family for spec in specs.values() for family in spec["families"]]}


def write_family_file(path: str | Path, families: Iterable[dict[str, Any]], header: str) -> Path:
    """Write ``families`` as a family file :func:`assemble` reads (one of :data:`FAMILY_FILES`): YAML under
    ``header``, a block of ``#`` comment lines saying where the families come from. Returns the path."""
    body = yaml.safe_dump({"families": list(families)}, sort_keys=False, allow_unicode=True, width=120)
    path = Path(path)
    path.write_text(header + body, encoding="utf-8")
    return path


def template_word_runs(files: Sequence[str] = FAMILY_FILES) -> dict[str, dict[str, str]]:
    """Every five-word run of literal text (between slots) in each split's own templates, texts written out in full,
    family slot values and ``@split`` pools, mapped to the family or pool it comes from:
    ``{"train": {run: where}, "eval": {...}}``.

    ``files`` are the family files read (default: all of :data:`FAMILY_FILES`; the first holds the pools). Pools
    without a split, used by both, are left out. Words are lower-cased runs of letters and digits (an apostrophe
    inside a word kept), so punctuation and spacing do not hide a shared phrase.
    """
    spec = _families_spec(files)
    runs: dict[str, dict[str, str]] = {"train": {}, "eval": {}}

    def add(split: str, value: object, where: str) -> None:
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            for item in value:
                add(split, item, where)
            return
        for fragment in _SLOT.sub("\0", str(value)).split("\0"):  # between slots (literal braces, as in JSON, stay)
            for run in word_runs(fragment):
                runs[split].setdefault(run, where)

    for name, values in spec["pools"].items():
        if "@" in name:
            add(name.split("@")[1], values, name)
    for family in spec["families"]:
        add(family["split"], [family.get("templates", []), family.get("slots", {})], family["name"])
        for text in family.get("texts", ()):  # written out in full: braces in them are text, not slots
            for run in word_runs(text):
                runs[family["split"]].setdefault(run, family["name"])
    return runs


def word_runs(text: str, length: int = 5) -> list[str]:
    """The runs of ``length`` consecutive words of ``text``, in order (see :func:`template_word_runs`)."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower().replace("\u2019", "'"))
    return [" ".join(words[start:start + length]) for start in range(len(words) - length + 1)]


def _derive_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _generate(filler: _Filler, family: dict[str, Any]) -> list[tuple[str, str]]:
    """Up to ``count`` distinct texts of one family with their sources (fewer when the templates run out); a family
    of ``texts`` written out in full gives them as written."""
    if "texts" in family:
        return [(text, filler.template_source) for text in family["texts"]]
    count = int(family["count"])
    texts: dict[str, str] = {}
    for _ in range(count * 30):
        if len(texts) >= count:
            break
        filler.start_text()
        text = _tidy(filler.fill(filler.rng.choice(family["templates"])))
        texts.setdefault(text, filler.source)
    return list(texts.items())


def _tidy(text: str) -> str:
    """Remove the traces of empty slot values: doubled spaces inside a line, a space before punctuation,
    blanks at the ends (indentation at the start of a line, as in docstrings, is kept)."""
    text = re.sub(r"(?<=\S)[ \t]{2,}", " ", text)
    text = re.sub(r"(?<=\w) ([.,;!?])(?=\s|$)", r"\1", text)
    return "\n".join(line.rstrip(" ") for line in text.strip().split("\n"))


class _Filler:
    """Fills one family's template slots from its own slots, then the split's pools, then the shared pools.

    Within one text a slot keeps its first value (a persona named twice has one name)."""

    def __init__(self, pools: dict[str, list[str]], family: dict[str, Any], rng: random.Random,
                 by_category: dict[tuple[str, str], list[str]]) -> None:
        self.pools = pools
        self.family = family
        self.split = family["split"]
        self.rng = rng
        self.by_category = by_category
        self.template_source = family.get("source", TEMPLATE_SOURCE)
        self.source = self.template_source
        self.bound: dict[str, str] = {}

    def start_text(self) -> None:
        self.source = self.template_source
        self.bound = {}

    def fill(self, template: str, depth: int = 0) -> str:
        if depth > 4:
            raise ValueError(f"slots nest too deeply in family {self.family['name']}: {template!r}")
        return _SLOT.sub(lambda match: _transform(self.value(match.group(1), depth), match.group(2)), template)

    def value(self, slot: str, depth: int) -> str:
        if slot == "docstring":
            return self.docstring()
        if slot == "docstring_planted":
            return _plant(self.docstring(), self.fill("{plant}", depth + 1), self.rng)
        if slot == "encoded":
            return self.encoded()
        if slot not in self.bound:
            choices = (self.family.get("slots", {}).get(slot) or self.pools.get(f"{slot}@{self.split}")
                       or self.pools.get(slot))
            if not choices:
                raise ValueError(f"family {self.family['name']} uses slot {{{slot}}}, which no pool defines")
            self.bound[slot] = self.fill(self.rng.choice(choices), depth + 1)
        return self.bound[slot]

    def docstring(self) -> str:
        name, text = self.rng.choice(_docstrings(self.split))
        self.source = f"Python {platform.python_version()} standard library, docstring of {name}"
        return text

    def encoded(self) -> str:
        pool = [text for category in self.family["payload_from"]
                for text in self.by_category.get((category, self.split), [])]
        if not pool:
            raise ValueError(f"family {self.family['name']} encodes texts of {self.family['payload_from']}, "
                             f"none generated yet in split {self.split}")
        return encode(self.rng.choice(pool), self.family["scheme"])


def _transform(value: str, how: str | None) -> str:
    if not value or how is None:
        return value
    if how == "upper":
        return value.upper()
    return (value[0].upper() if how == "cap" else value[0].lower()) + value[1:]


def _plant(document: str, instruction: str, rng: random.Random) -> str:
    """``document`` with ``instruction`` inserted after one of its sentences (never before the first)."""
    ends = [match.end() for match in re.finditer(r"[.!?:](?=\s)", document)]
    at = rng.choice(ends) if ends else len(document)
    return f"{document[:at]} {instruction}{document[at:]}"


def encode(text: str, scheme: str) -> str:
    """``text`` hidden by one of the schemes the normalisation layer undoes.

    Schemes: ``base64``, ``hex``, ``rot13``, ``reversed`` (characters in reverse order), ``zero-width`` (a
    zero-width space after every letter of every other word), ``homoglyph`` (Latin letters swapped for Cyrillic
    look-alikes).
    """
    if scheme == "base64":
        return base64.b64encode(text.encode()).decode()
    if scheme == "hex":
        return text.encode().hex()
    if scheme == "rot13":
        return codecs.encode(text, "rot13")
    if scheme == "reversed":
        return text[::-1]
    if scheme == "zero-width":
        words = text.split(" ")
        return " ".join("\u200b".join(word) if index % 2 == 0 else word for index, word in enumerate(words))
    if scheme == "homoglyph":
        return text.translate(_HOMOGLYPHS)
    raise InputError(f"unknown encoding scheme {scheme!r}; use base64, hex, rot13, reversed, zero-width or homoglyph")


@lru_cache(maxsize=2)
def _docstrings(split: str) -> tuple[tuple[str, str], ...]:
    """``(qualified name, excerpt)`` of the public functions and classes of the split's modules, sorted."""
    found = []
    for module_name in DOCSTRING_MODULES[split]:
        module = importlib.import_module(module_name)
        for name, member in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(member) or inspect.isclass(member)
                                            or inspect.isbuiltin(member)):
                continue
            if (getattr(member, "__module__", "") or "").split(".")[0].lstrip("_") != module_name.split(".")[0]:
                continue  # re-exported from elsewhere
            doc = inspect.getdoc(member) or ""
            if len(doc) >= 200:
                found.append((f"{module_name}.{name}", _excerpt(doc)))
    return tuple(found)


def _excerpt(doc: str) -> str:
    """The docstring's first paragraphs, cut at a paragraph or sentence end before :data:`DOCSTRING_CHARS`."""
    if len(doc) <= DOCSTRING_CHARS:
        return doc
    head = doc[:DOCSTRING_CHARS]
    cut = head.rfind("\n\n")
    if cut < DOCSTRING_CHARS // 3:
        cut = max(head.rfind(". "), head.rfind(".\n"))
        cut = cut + 1 if cut > 0 else DOCSTRING_CHARS
    return head[:cut].rstrip()


def family_splits(examples: Iterable[Example]) -> dict[str, set[str]]:
    """Which splits each family's examples are in (one each, by construction)."""
    splits: dict[str, set[str]] = {}
    for example in examples:
        splits.setdefault(example.family, set()).add(example.split)
    return splits

