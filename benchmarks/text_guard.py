"""Text prompt-injection guard benchmark: latency per 1,000-character prompt, and detection per category.

Run from the repository root::

    .venv/bin/python benchmarks/text_guard.py                # a few minutes on 2 busy cores
    .venv/bin/python benchmarks/text_guard.py --prompts 500 --threads 1
    .venv/bin/python benchmarks/text_guard.py --data mine.jsonl   # detection on your own labelled set
    .venv/bin/python benchmarks/text_guard.py --with-eval-split --data benchmarks/heldout/text_guard_eval_b.jsonl
                                                             # the acceptance figures: eval split and eval-b pooled
    .venv/bin/python benchmarks/text_guard.py --quick        # smoke run, figures mean nothing

Results go to ``benchmarks/results/text_guard.json`` (``--quick``: ``benchmarks/out/text_guard_quick.json``;
``--out`` to choose) and a summary is printed. Targets (the issue's acceptance text): p50 under 15 ms per
1,000-character prompt on 2 CPU cores; recall >= 90% on overt injections at <= 5% false positives on benign
prompts that contain trigger words (``benign-trigger``).

What is measured:

1. **Latency.** ``--prompts`` prompts (default 200) of exactly 1,000 characters, built deterministically from
   ``--seed`` out of the eval split of bastion's corpus (``assemble(seed)``, then ``split_examples(.., "eval")``):
   each starts with a benign request (a ``benign`` or ``benign-trigger`` example) followed by paragraphs of
   ``benign-document`` examples (articles, e-mails, web pages, standard-library docstrings), cut at 1,000
   characters. Every second prompt also
   carries an overt injection (``instruction-override``, ``role-play``, ``prompt-extraction`` or ``delimiter``),
   inserted whole at a random paragraph boundary inside the first 1,000 characters. The mix is recorded.
   Each guard is warmed up first (its first call, which loads the embedding model, is timed apart as
   ``first_call_ms``), then every prompt is screened once by every guard, the guards' order rotating from one
   prompt to the next so that the machine's drift falls on all of them alike; each ``screen`` call is timed
   with ``time.perf_counter``. p50, p99, mean and max are reported over all prompts, and separately over the
   benign and the injected ones. This is repeated ``--rounds`` times (default 3); the machine's speed drifts by
   a quarter or more from one minute to the next, so the round whose shipped-guard p50 is the median is
   reported, with every round's p50. Rows:

   - ``rules``: ``PromptGuard(classifier=None)``: normalisation and rules only;
   - ``rules + classifier``: ``PromptGuard()``, the shipped guard. The classifier is skipped when a rule has
     already fired, so injected prompts the rules catch cost about what ``rules`` costs: the benign column is
     the price of the classifier;
   - ``rules + classifier (exhaustive)`` with ``--exhaustive``: the classifier runs on every prompt;
   - LLM Guard's ``PromptInjection`` scanner, where it can run (see 3).

   Threads: BLAS/OpenMP pools are limited to ``--threads`` (default 2) with threadpoolctl, and where the
   machine has more cores than that, the process is pinned to ``--threads`` of them (``--no-pin`` not to).
   The classifier sets its own BLAS threads while it embeds (its ``threads`` parameter, stored in the shipped
   classifier file and recorded under ``config.guard``); the benchmark measures it as shipped unless
   ``--classifier-threads`` overrides it.
2. **Detection.** ``bastion.defenses.text.evaluate.evaluate`` (what ``bastion guard eval`` runs) over the whole
   eval split (``--data FILE.jsonl`` for labelled files of your own instead, pooled when given more than once;
   ``--with-eval-split`` pools them with the eval split, as the acceptance figures since the second held-out set,
   ``benchmarks/heldout/text_guard_eval_b.jsonl``, do), for the
   shipped guard and for its rules alone: precision, recall and false-positive rate per category, overt recall,
   the benign-trigger false-positive rate, and whether the targets are met. The full evaluation record of the
   shipped guard (missed injections and false alarms included) is kept in the JSON.
3. **LLM Guard** (``llm_guard.input_scanners.PromptInjection``, ProtectAI's DeBERTa-v3
   ``protectai/deberta-v3-base-prompt-injection-v2``, default threshold 0.9, full-prompt match). It downloads
   its model from the Hugging Face Hub when built. The script never lets it: ``HF_HUB_OFFLINE=1`` is set before
   ``llm_guard`` is imported, and the scanner is built only if ``llm_guard`` imports and the model is already in the
   local Hugging Face cache; then it is timed on the same prompts (torch limited to ``--threads``) and
   evaluated on the same examples. Otherwise the JSON's ``peer`` entry says ``"ran": false`` and why. (On the
   project's machine it cannot run: llm-guard is not installed, since it pulls torch/transformers builds of its
   own, and the Hub is out of reach, so its model cannot be fetched.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from bastion import __version__
from bastion.core.errors import InputError
from bastion.defenses.text.corpus import (
    LONG_PROMPT_CHARS,
    OVERT_CATEGORIES,
    Example,
    assemble,
    long_prompt,
    read_labelled_jsonl,
    split_examples,
)
from bastion.defenses.text.evaluate import (
    TARGET_OVERT_RECALL,
    TARGET_TRIGGER_FPR,
    GuardEvaluation,
    evaluate,
)
from bastion.defenses.text.findings import Finding, Verdict
from bastion.defenses.text.guard import DEFAULT_MAX_CHARS, PromptGuard, check_threshold

ROOT = Path(__file__).resolve().parent
#: Characters per latency prompt.
PROMPT_CHARS = LONG_PROMPT_CHARS
#: The latency target: p50 per 1,000-character prompt under this many milliseconds (on 2 cores).
TARGET_P50_MS = 15.0
#: Requests that open a benign prompt, and the injections planted in the others.
HEAD_CATEGORIES = ("benign", "benign-trigger")
FILLER_CATEGORY = "benign-document"
#: ``--quick``: prompts, and detection examples per (category, label).
QUICK_PROMPTS = 40
QUICK_PER_CATEGORY = 12
PEER_NAME = "llm-guard PromptInjection"
PEER_MODEL = "protectai/deberta-v3-base-prompt-injection-v2"


@dataclass(frozen=True)
class Prompt:
    """One latency prompt: ``text`` is exactly :data:`PROMPT_CHARS` characters."""

    text: str
    injected: bool
    head: str  # category of the opening request
    injection: str | None  # category of the planted injection
    offset: int | None  # where the injection starts


# ------------------------------------------------------------------------------------------- prompts

def latency_prompts(examples: Sequence[Example], count: int, seed: int) -> list[Prompt]:
    """``count`` prompts of :data:`PROMPT_CHARS` characters; odd-numbered ones carry an overt injection."""
    rng = random.Random(seed)
    heads = [example for example in examples if example.category in HEAD_CATEGORIES and example.label == 0]
    filler = [example.text for example in examples if example.category == FILLER_CATEGORY and example.label == 0]
    injections = [example for example in examples if example.category in OVERT_CATEGORIES and example.label == 1]
    if not heads or not filler or not injections:
        raise SystemExit("the corpus's eval split lacks benign, benign-document or overt injection examples")
    prompts = []
    for index in range(count):
        head = rng.choice(heads)
        injection = rng.choice(injections) if index % 2 else None
        paragraphs = long_prompt(head.text, filler, rng, PROMPT_CHARS)
        offset = None
        if injection is not None:
            starts = [len("\n\n".join(paragraphs[:k])) + (2 if k else 0) for k in range(len(paragraphs) + 1)]
            # Paragraph boundaries at which the whole injection still lies inside the first 1,000 characters.
            allowed = [k for k, start in enumerate(starts) if start + len(injection.text) <= PROMPT_CHARS]
            k = rng.choice(allowed)
            paragraphs.insert(k, injection.text)
            offset = starts[k]
        text = "\n\n".join(paragraphs)[:PROMPT_CHARS]
        assert len(text) == PROMPT_CHARS and (injection is None or injection.text in text)
        prompts.append(Prompt(text=text, injected=injection is not None, head=head.category,
                              injection=injection.category if injection else None, offset=offset))
    return prompts


def describe_prompts(prompts: Sequence[Prompt]) -> dict[str, Any]:
    offsets = [prompt.offset for prompt in prompts if prompt.offset is not None]
    return {
        "count": len(prompts), "chars": PROMPT_CHARS,
        "benign": sum(not prompt.injected for prompt in prompts),
        "injected": sum(prompt.injected for prompt in prompts),
        "opening_request": dict(Counter(prompt.head for prompt in prompts)),
        "filler": FILLER_CATEGORY,
        "injection_categories": dict(Counter(prompt.injection for prompt in prompts if prompt.injection)),
        "injection_offset": ({"min": min(offsets), "median": float(np.median(offsets)), "max": max(offsets)}
                             if offsets else None),
    }


# ------------------------------------------------------------------------------------------- latency

def time_guards(screens: dict[str, Callable[[str], Verdict]], prompts: Sequence[Prompt],
                warmup: int) -> dict[str, dict[str, Any]]:
    """Every prompt through every guard once, the order rotating per prompt; figures per guard."""
    first_call: dict[str, float] = {}
    for name, screen in screens.items():
        for index in range(max(warmup, 1)):
            start = time.perf_counter()
            screen(prompts[index % len(prompts)].text)
            if index == 0:
                first_call[name] = (time.perf_counter() - start) * 1000.0
    names = list(screens)
    ms: dict[str, list[float]] = {name: [0.0] * len(prompts) for name in names}
    flagged: dict[str, list[bool]] = {name: [False] * len(prompts) for name in names}
    for index, prompt in enumerate(prompts):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            verdict = screens[name](prompt.text)
            ms[name][index] = (time.perf_counter() - start) * 1000.0
            flagged[name][index] = verdict.flagged
    injected = np.array([prompt.injected for prompt in prompts])
    rows = {}
    for name in names:
        times, hits = np.array(ms[name]), np.array(flagged[name])
        rows[name] = {
            "all": _percentiles(times), "benign": _percentiles(times[~injected]),
            "injected": _percentiles(times[injected]),
            "first_call_ms": round(first_call[name], 3),
            # A side figure: these prompts are not the labelled set of the detection part.
            "flagged": {"benign": int(hits[~injected].sum()), "injected": int(hits[injected].sum())},
        }
    return rows


def median_round(rounds: Sequence[dict[str, dict[str, Any]]], guard: str) -> dict[str, dict[str, Any]]:
    """The round whose p50 for ``guard`` is the median of the rounds' (the lower middle for an even count): the
    machine's speed drifts between minutes, so one round can be all slow or all fast."""
    order = sorted(range(len(rounds)), key=lambda index: rounds[index][guard]["all"]["p50_ms"])
    return rounds[order[(len(order) - 1) // 2]]


def _percentiles(ms: np.ndarray) -> dict[str, float] | None:
    if not len(ms):
        return None
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "mean_ms": round(float(ms.mean()), 3),
            "max_ms": round(float(ms.max()), 3)}


# ------------------------------------------------------------------------------------------- detection

def detection_examples(args: argparse.Namespace, corpus: Sequence[Example],
                       labelled: Sequence[Sequence[Example]]) -> tuple[list[Example], str]:
    """The examples detection is measured on, and a description: the corpus's eval split unless ``--data`` named
    labelled files (``labelled``, read from them in the order given), or both, pooled, with ``--with-eval-split``."""
    parts: list[tuple[str, Sequence[Example]]] = []
    if not args.data or args.with_eval_split:
        parts.append((f"bastion corpus, eval split (seed {args.seed})", corpus))
    parts += [(str(path), file_examples) for path, file_examples in zip(args.data or (), labelled, strict=True)]
    examples: list[Example] = []
    first_from: dict[str, str] = {}
    for source, part in parts:
        for example in part:  # pooled, each text counts once (a set's own repeats are its own business)
            if first_from.setdefault(example.id, source) != source:
                raise InputError(f"the text {example.text[:60]!r} (label {example.label}) is in both "
                                 f"{first_from[example.id]} and {source}; pool sets that share no text")
        examples += part
    data = " + ".join(source for source, _ in parts)
    if args.quick:
        rng = random.Random(args.seed)
        groups: dict[tuple[str, int], list[Example]] = {}
        for example in examples:
            groups.setdefault((example.category, example.label), []).append(example)
        examples = [example for group in groups.values()
                    for example in rng.sample(group, min(QUICK_PER_CATEGORY, len(group)))]
        data += f", at most {QUICK_PER_CATEGORY} per category (--quick)"
    return examples, data


def compact(evaluation: GuardEvaluation) -> dict[str, Any]:
    """The headline figures of an evaluation (the full record of the shipped guard is stored apart)."""
    return {
        "guard": evaluation.guard, "examples": evaluation.examples,
        "overall": evaluation.overall.model_dump(), "overt": evaluation.overt.model_dump(),
        "overt_recall": evaluation.overt_recall, "benign_trigger_fpr": evaluation.benign_trigger_fpr,
        "overt_recall_interval": evaluation.overt_recall_interval,
        "benign_trigger_fpr_interval": evaluation.benign_trigger_fpr_interval,
        "interval_method": evaluation.interval_method, "meets_target": evaluation.meets_target,
        "categories": [row.model_dump() for row in evaluation.categories],
        "caught_by": evaluation.caught_by, "false_alarms_by": evaluation.false_alarms_by,
        "latency_per_example": evaluation.latency.model_dump() if evaluation.latency else None,
    }


# ------------------------------------------------------------------------------------------- peer

def build_peer(threads: int) -> tuple[Callable[[str], Verdict] | None, dict[str, Any]]:
    """LLM Guard's PromptInjection scanner as a ``screen`` function, or ``None`` and why it cannot run here."""
    entry: dict[str, Any] = {"name": PEER_NAME, "model": PEER_MODEL, "ran": False}
    # Never fetch a model from the Hub during a benchmark: offline before huggingface_hub is imported (and in
    # case something imported it already, in its constants too).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    if importlib.util.find_spec("llm_guard") is None:
        entry["why"] = ("llm-guard is not installed. It is not installed for this benchmark because it pulls its "
                        "own torch/transformers builds, and it could not run here anyway: its PromptInjection "
                        f"scanner downloads {PEER_MODEL} from the Hugging Face Hub when built, and this machine "
                        "reaches only package registries, not the Hub.")
        return None, entry
    try:
        from importlib.metadata import version

        entry["version"] = version("llm-guard")
        from llm_guard.input_scanners import PromptInjection
        from llm_guard.input_scanners.prompt_injection import V2_MODEL, MatchType
    except Exception as error:  # a broken install: say so and go on
        entry["why"] = f"llm_guard is installed but does not import: {type(error).__name__}: {error}"
        return None, entry
    entry["model"] = V2_MODEL.path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(V2_MODEL.path, "config.json", revision=V2_MODEL.revision)
    except Exception as error:
        cached, entry["cache_error"] = None, f"{type(error).__name__}: {error}"
    if not isinstance(cached, str):
        entry["why"] = (f"llm-guard imports, but its model {V2_MODEL.path} (revision {V2_MODEL.revision}) is not in "
                        "the local Hugging Face cache, and this machine cannot reach the Hub to download it "
                        "(HF_HUB_OFFLINE=1 is set so that nothing is fetched)")
        return None, entry
    try:
        import torch

        torch.set_num_threads(threads)
        scanner = PromptInjection(threshold=0.9, match_type=MatchType.FULL)
    except Exception as error:
        entry["why"] = f"building the scanner offline failed: {type(error).__name__}: {error}"
        return None, entry
    entry |= {"threshold": 0.9, "match_type": "full", "torch": torch.__version__}

    def screen(text: str) -> Verdict:
        _, valid, risk = scanner.scan(text)
        findings = [] if valid else [Finding(layer="classifier", category="learned", rule="llm-guard.PromptInjection",
                                             reason=f"LLM Guard's PromptInjection risk score {risk}",
                                             score=float(risk))]
        return Verdict(flagged=not valid, score=float(risk), categories=["learned"] if findings else [],
                       findings=findings)

    entry["ran"] = True
    return screen, entry


# ------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=None,
                        help=f"latency prompts of {PROMPT_CHARS} characters (default 200; --quick: {QUICK_PROMPTS})")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads, and cores pinned (default 2)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to --threads cores")
    parser.add_argument("--classifier-threads", type=int, default=None,
                        help="BLAS threads of the classifier while it embeds (default: the shipped classifier's own)")
    parser.add_argument("--classifier", type=Path, default=None,
                        help="a classifier file written by `bastion guard train` (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and prompt seed (default 0)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per guard first (default 5)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timing rounds over the prompts; the round with the median p50 of the shipped guard is "
                             "reported, with every round's p50 (default 3; --quick: 1)")
    parser.add_argument("--exhaustive", action="store_true",
                        help="also time the guard with the classifier run on every prompt")
    parser.add_argument("--data", type=Path, action="append", default=None,
                        help="labelled JSON lines to evaluate detection on instead of the corpus's eval split "
                             "(may be given more than once: the files are pooled)")
    parser.add_argument("--with-eval-split", action="store_true",
                        help="pool the corpus's eval split with the --data files (as the acceptance figures do)")
    parser.add_argument("--skip-detection", action="store_true", help="latency only")
    parser.add_argument("--long-threshold", type=float, default=None,
                        help="the guard's long_threshold for prompts over 256 characters (default: none)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_PROMPTS} prompts, at most {QUICK_PER_CATEGORY} detection examples "
                             "per category, results to benchmarks/out/")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/text_guard.json; "
                             "--quick: benchmarks/out/text_guard_quick.json)")
    args = parser.parse_args()
    if args.threads < 1 or (args.classifier_threads is not None and args.classifier_threads < 1):
        parser.error("--threads and --classifier-threads must be at least 1")
    count = args.prompts if args.prompts is not None else (QUICK_PROMPTS if args.quick else 200)
    if count < 2:
        parser.error("--prompts must be at least 2")
    if args.with_eval_split and not args.data:
        parser.error("--with-eval-split pools the eval split with --data files: name at least one --data file")
    if args.skip_detection and args.data:
        parser.error("--data and --with-eval-split choose what detection is measured on: leave out --skip-detection")
    try:  # read the labelled files before any work, so that a bad line is refused at once
        labelled = [read_labelled_jsonl(path, max_chars=DEFAULT_MAX_CHARS) for path in args.data or ()]
    except InputError as error:
        parser.error(f"--data: {error}")
    try:
        check_threshold("--long-threshold", args.long_threshold)  # PromptGuard's own check, before any work
    except InputError as error:
        parser.error(str(error))
    rounds_count = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds_count < 1:
        parser.error("--rounds must be at least 1")
    out = args.out or (ROOT / "out" / "text_guard_quick.json" if args.quick else ROOT / "results" / "text_guard.json")

    affinity = _pin(args.threads) if not args.no_pin else _affinity()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        corpus = split_examples(assemble(args.seed), "eval")
        try:
            examples, data = detection_examples(args, corpus, labelled)
        except InputError as error:
            parser.error(f"--data: {error}")
        prompts = latency_prompts(corpus, count, args.seed)
        from bastion.defenses.text.classifier import InjectionClassifier, load_default

        classifier = InjectionClassifier.load(args.classifier) if args.classifier else load_default()
        if args.classifier_threads is not None:
            classifier.set_params(threads=args.classifier_threads)
        guard = PromptGuard(classifier=classifier, long_threshold=args.long_threshold)
        screens: dict[str, Callable[[str], Verdict]] = {"rules": PromptGuard(classifier=None).screen,
                                                         "rules + classifier": guard.screen}
        if args.exhaustive:
            screens["rules + classifier (exhaustive)"] = PromptGuard(classifier=classifier, exhaustive=True,
                                                                     long_threshold=args.long_threshold).screen
        peer_screen, peer = build_peer(args.threads)
        if peer_screen is not None:
            screens[PEER_NAME] = peer_screen
        print(f"text guard: {count} prompts of {PROMPT_CHARS} characters, {args.threads} thread(s), "
              f"guards: {', '.join(screens)}", flush=True)
        rounds = [time_guards(screens, prompts, args.warmup) for _ in range(rounds_count)]
        latency = median_round(rounds, "rules + classifier")
        shipped = latency["rules + classifier"]["all"]

        detection = None
        if not args.skip_detection:
            print(f"detection: {len(examples)} examples ({data})", flush=True)
            full = evaluate(guard.screen, examples, guard="rules + classifier", data=data)
            rules = evaluate(screens["rules"], examples, guard="rules", data=data)
            detection = {"data": data, "examples": len(examples), "guard": compact(full), "rules_only": compact(rules),
                         "evaluation": json.loads(full.model_dump_json())}
            if peer_screen is not None:
                detection["peer"] = compact(evaluate(peer_screen, examples, guard=PEER_NAME, data=data))
        blas = [{key: pool.get(key) for key in ("user_api", "internal_api", "num_threads", "version")}
                for pool in threadpool_info()]

    result = {
        "benchmark": "text_guard",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "cpu_affinity": affinity, "threads": args.threads, "thread_pools": blas,
                    "numpy": np.__version__, "bastion": __version__,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "config": {"seed": args.seed, "prompts": count, "warmup": args.warmup, "rounds": rounds_count,
                   "exhaustive": args.exhaustive,
                   "classifier_threads": args.classifier_threads,
                   "classifier_file": str(args.classifier) if args.classifier else "shipped",
                   "data": [str(path) for path in args.data] if args.data else None,
                   "with_eval_split": args.with_eval_split, "skip_detection": args.skip_detection,
                   "guard": guard.get_params(), "command": " ".join(sys.argv)},
        "targets": {"p50_ms": TARGET_P50_MS, "overt_recall": TARGET_OVERT_RECALL,
                    "benign_trigger_fpr": TARGET_TRIGGER_FPR},
        "latency": {"prompts": describe_prompts(prompts), "rows": latency,
                    "round_p50_ms": {name: [row[name]["all"]["p50_ms"] for row in rounds] for name in screens},
                    "meets_target": shipped is not None and shipped["p50_ms"] < TARGET_P50_MS},
        "detection": detection,
        "peer": peer,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    _print_summary(result)
    print(f"wrote {out}")


def _affinity() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _pin(threads: int) -> list[int] | None:
    """Pin the process to ``threads`` of the cores it may use, where it may use more (Linux only)."""
    cores = _affinity()
    if cores is not None and len(cores) > threads:
        os.sched_setaffinity(0, cores[:threads])
        cores = _affinity()
    return cores


def _print_summary(result: dict[str, Any]) -> None:
    mix = result["latency"]["prompts"]
    print(f"\nLatency per {PROMPT_CHARS}-character prompt, {result['machine']['threads']} thread(s), "
          f"{mix['count']} prompts ({mix['benign']} benign, {mix['injected']} injected), ms:")
    print(f"  {'guard':<34} {'p50':>7} {'p99':>7} {'mean':>7} {'p50 ben':>8} {'p99 ben':>8} {'p50 inj':>8} "
          f"{'p99 inj':>8} {'1st call':>9}")
    for name, row in result["latency"]["rows"].items():
        print(f"  {name:<34} {row['all']['p50_ms']:>7.2f} {row['all']['p99_ms']:>7.2f} {row['all']['mean_ms']:>7.2f} "
              f"{row['benign']['p50_ms']:>8.2f} {row['benign']['p99_ms']:>8.2f} {row['injected']['p50_ms']:>8.2f} "
              f"{row['injected']['p99_ms']:>8.2f} {row['first_call_ms']:>9.1f}")
    shipped = result["latency"]["rows"]["rules + classifier"]["all"]["p50_ms"]
    per_round = ", ".join(f"{value:.2f}" for value in result["latency"]["round_p50_ms"]["rules + classifier"])
    print(f"  target p50 < {TARGET_P50_MS:g} ms: {'met' if result['latency']['meets_target'] else 'NOT met'} "
          f"({shipped:.2f} ms, the median round; rounds: {per_round})")
    peer = result["peer"]
    if not peer["ran"]:
        print(f"  {peer['name']}: not run: {peer['why']}")

    detection = result["detection"]
    if detection is None:
        return
    full, rules = detection["guard"], detection["rules_only"]
    print(f"\nDetection on {detection['examples']} examples ({detection['data']}):")
    print(f"  {'category':<22} {'label':>5} {'n':>5} {'precision':>9} {'recall':>7} {'FPR':>7} {'rules only':>11}")
    rules_rows = {(row["category"], row["label"]): row for row in rules["categories"]}
    for row in full["categories"]:
        other = rules_rows.get((row["category"], row["label"]), {})
        figure = "recall" if row["label"] else "false_positive_rate"
        print(f"  {row['category']:<22} {row['label']:>5} {row['count']:>5} {_pct(row['precision']):>9} "
              f"{_pct(row['recall']):>7} {_pct(row['false_positive_rate']):>7} {_pct(other.get(figure)):>11}")
    for name, record in (("rules + classifier", full), ("rules only", rules), *(
            ((PEER_NAME, detection["peer"]),) if "peer" in detection else ())):
        verdict = {None: "n/a", True: "met", False: "NOT met"}[record["meets_target"]]
        print(f"  {name}: overt recall {_pct(record['overt_recall'])}{_interval(record, 'overt_recall')} (target >= "
              f"{TARGET_OVERT_RECALL:.0%}), benign-trigger FPR {_pct(record['benign_trigger_fpr'])}"
              f"{_interval(record, 'benign_trigger_fpr')} (target <= {TARGET_TRIGGER_FPR:.0%}), "
              f"overall precision {_pct(record['overall']['precision'])} recall {_pct(record['overall']['recall'])} "
              f"FPR {_pct(record['overall']['false_positive_rate'])}: target {verdict}")


def _interval(record: dict[str, Any], name: str) -> str:
    """`` [low, high]`` of a headline figure's 95% interval (with "by family" when a family bootstrap made it), or
    nothing for a record without one (the peer's)."""
    bounds = record.get(f"{name}_interval")
    if not bounds:
        return ""
    by = "by family " if record.get("interval_method", {}).get(name) == "families" else ""
    return f" [95% {by}{_pct(bounds[0])}-{_pct(bounds[1])}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
