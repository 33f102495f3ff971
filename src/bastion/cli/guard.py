"""``bastion guard``: screen prompts for injected instructions and replies for leaks, and measure the screen.

Exit codes: 0 nothing found, 1 flagged (a prompt with an injection, a reply with a leak), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, printable, user_errors
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.defenses.text.evaluate import GuardEvaluation
    from bastion.defenses.text.findings import Verdict

guard_app = typer.Typer(
    name="guard",
    help="Guard text models: 'prompt' screens a prompt for injected instructions (also hidden in Base64, hex, "
    "invisible characters, homoglyphs, reversed text), 'output' screens a reply for secrets, PII and a leaked "
    "system prompt ('canary' makes a token to plant in one), 'eval' measures the screen on a labelled set, "
    "'train' retrains its classifier, 'calibrate' sets its threshold on benign prompts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_MAX_CHARS = typer.Option("--max-chars", help="The longest text screened, in characters; longer is refused.")
_JSON = typer.Option("--json", help="Print the verdict as JSON instead of a summary.")
_THRESHOLD = typer.Option(help="Classifier probability that flags a prompt (default: the classifier's own).",
                          show_default=False)
_LONG_THRESHOLD = typer.Option(help="Classifier probability that flags, instead, a prompt over 256 characters "
                               "(default: --threshold). Higher flags fewer long benign prompts, misses more long "
                               "attacks, and lets an attacker pad a short one past 256 characters; README, "
                               "'bastion guard'.", show_default=False)


@guard_app.command("prompt")
def prompt_command(
    text: Annotated[str | None, typer.Argument(help="The prompt; '-' or nothing reads it from standard input.",
                                               show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the prompt from this UTF-8 file.",
                                              show_default=False)] = None,
    rules_only: Annotated[bool, typer.Option("--rules-only", help="Skip the learned classifier.")] = False,
    threshold: Annotated[float | None, _THRESHOLD] = None,
    long_threshold: Annotated[float | None, _LONG_THRESHOLD] = None,
    classifier: Annotated[Path | None, typer.Option(help="A classifier (.json) written by 'bastion guard train', "
                                                    "its .adapter.safetensors beside it (default: the one shipped "
                                                    "with bastion).",
                                                    show_default=False)] = None,
    max_chars: Annotated[int, _MAX_CHARS] = 1_048_576,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Screen a prompt (or a retrieved document) for injected instructions; exit 1 when flagged."""
    from bastion.defenses.text.guard import PromptGuard

    with user_errors():
        guard = PromptGuard(classifier=_classifier(classifier, rules_only, threshold, long_threshold),
                            threshold=threshold, long_threshold=long_threshold, max_chars=max_chars)
        prompt = _read_text(text, file, max_chars)
        if not prompt.strip():
            raise InputError("the prompt is empty (or only whitespace): give the text to screen as an argument, "
                             "with --file, or on standard input")
        verdict = guard.screen(prompt)
    _report(verdict, as_json, "injection")


@guard_app.command("output")
def output_command(
    text: Annotated[str | None, typer.Argument(help="The reply; '-' or nothing reads it from standard input.",
                                               show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the reply from this UTF-8 file.",
                                              show_default=False)] = None,
    canary: Annotated[list[str] | None, typer.Option("--canary", help="A canary token planted in the system "
                                                     "prompt (repeatable).", show_default=False)] = None,
    system_prompt: Annotated[Path | None, typer.Option("--system-prompt", help="A file with the system prompt: "
                                                       "a reply that repeats a long run of it is a leak.",
                                                       show_default=False)] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Print the reply with every finding masked.")] = False,
    max_chars: Annotated[int, _MAX_CHARS] = 1_048_576,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Screen a model's reply for secrets, PII and system-prompt leaks; exit 1 when anything is found."""
    from bastion.defenses.text.output import screen_output

    with user_errors():
        prompt = None if system_prompt is None else _read_file(system_prompt, "--system-prompt")
        verdict = screen_output(_read_text(text, file, max_chars), canaries=canary or (), system_prompt=prompt,
                                max_chars=max_chars)
    if redact and not as_json:
        sys.stdout.write((verdict.redacted or "") + "\n")
        raise typer.Exit(1 if verdict.flagged else 0)
    _report(verdict, as_json, "leak")


@guard_app.command("canary")
def canary_command(
    prefix: Annotated[str, typer.Option(help="A readable label before the random part, without spaces; '' for "
                                        "none.")] = "bastion-canary",
) -> None:
    """Print a fresh canary token (96 random bits) to plant in a system prompt; screen replies for it with
    'bastion guard output --canary TOKEN'."""
    from bastion.defenses.text.output import make_canary

    with user_errors():
        token = make_canary(prefix)
    sys.stdout.write(token + "\n")


@guard_app.command("eval")
def eval_command(
    data: Annotated[Path | None, typer.Option("--data", help=(
        "Labelled JSON lines: {\"text\": ..., \"label\": 0|1 or \"benign\"|\"injection\", \"category\": ..., "
        "\"family\": ...}; category and family are optional, and a family gets its own row (default: the "
        "evaluation split of bastion's own corpus)."), show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder for guard_eval.json and guard_eval.html.")] = Path("guard-eval"),
    rules_only: Annotated[bool, typer.Option("--rules-only", help="Skip the learned classifier.")] = False,
    classifier: Annotated[Path | None, typer.Option(help="A classifier (.json) written by 'bastion guard train', "
                                                    "its .adapter.safetensors beside it.",
                                                    show_default=False)] = None,
    threshold: Annotated[float | None, _THRESHOLD] = None,
    long_threshold: Annotated[float | None, _LONG_THRESHOLD] = None,
) -> None:
    """Measure the prompt guard on a labelled set: precision, recall and false positives per category."""
    from bastion.defenses.text.corpus import assemble, read_labelled_jsonl
    from bastion.defenses.text.evaluate import evaluate, render_html
    from bastion.defenses.text.guard import DEFAULT_MAX_CHARS, PromptGuard
    from bastion.scan.report._common import write_text_atomically

    with user_errors():
        examples = ([example for example in assemble() if example.split == "eval"] if data is None
                    else read_labelled_jsonl(data, max_chars=DEFAULT_MAX_CHARS))
        guard = PromptGuard(classifier=_classifier(classifier, rules_only, threshold, long_threshold),
                            threshold=threshold, long_threshold=long_threshold)
        evaluation = evaluate(guard.screen, examples)
        _make_folder(out)
        write_text_atomically(out / "guard_eval.json", evaluation.model_dump_json(indent=2) + "\n")
        render_html(evaluation, out / "guard_eval.html")
    _print_evaluation(evaluation)
    console.print(f"wrote {out / 'guard_eval.json'} and {out / 'guard_eval.html'}", highlight=False)


@guard_app.command("train")
def train_command(
    out: Annotated[Path, typer.Option(help="Where to write the classifier (JSON).")] = Path(
        "injection_classifier.json"),
    seed: Annotated[int, typer.Option(help="Seed of the corpus and the fit.")] = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads for the encoder and its adapter's training "
                                                "(default: all cores).")] = None,
    adapter: Annotated[bool, typer.Option(help="Fine-tune the encoder with low-rank adapters (six soups of three "
                                          "trainings, most of the time); --no-adapter reads the encoder as "
                                          "published.")] = True,
) -> None:
    """Retrain the learned layer on bastion's own labelled corpus (its training split), calibrate its threshold on
    bastion's benign calibration prompts (as 'calibrate' does), and write it (with its encoder adapter beside it,
    as <name>.adapter.safetensors)."""
    from bastion.defenses.text.adapter import AdapterSettings
    from bastion.defenses.text.classifier import adapter_path
    from bastion.defenses.text.training import train_default

    with user_errors():
        if not out.parent.is_dir():  # found before the training (most of an hour), not after
            raise InputError(f"--out {out}: the folder {out.parent} does not exist")
        metrics = train_default(out, seed=seed, threads=threads,
                                adapter=AdapterSettings(seed=seed) if adapter else None)
    console.print_json(json.dumps(metrics))
    console.print(f"wrote {out}" + (f" and {adapter_path(out)}" if adapter else ""), highlight=False)


@guard_app.command("calibrate")
def calibrate_command(
    out: Annotated[Path, typer.Option(help="Where to write the calibrated classifier (JSON; its adapter goes "
                                      "beside it).")] = Path("injection_classifier.json"),
    data: Annotated[Path | None, typer.Option("--data", help=(
        "Benign prompts as JSON lines, {\"text\": ...} each (a \"label\", if given, must be 0 or \"benign\"): "
        "your own traffic, full of the words your users write; at least enough that 5 may be flagged (125 at "
        "the default --max-fpr; default: bastion's calibration set)."),
        show_default=False)] = None,
    classifier: Annotated[Path | None, typer.Option(help="The classifier (.json) to calibrate (default: the one "
                                                    "shipped with bastion).", show_default=False)] = None,
    max_fpr: Annotated[float, typer.Option("--max-fpr", min=0.0, max=0.99, help=(
        "The share of the benign prompts the whole guard may flag."))] = 0.04,
    evaluate: Annotated[bool, typer.Option("--evaluate", help=(
        "Also score the calibrated classifier alone on bastion's eval split and keep the figures in its file "
        "(about a minute)."))] = False,
) -> None:
    """Set the classifier's threshold to the lowest at which the guard (rules and classifier) flags at most
    --max-fpr of benign prompts, and write it; exit 1 when no threshold keeps within the bound."""
    from bastion.defenses.text.calibration import (
        CALIBRATION_FILE,
        apply_calibration,
        calibrate,
        read_benign_texts,
        shipped_calibration_texts,
    )
    from bastion.defenses.text.classifier import adapter_path, load_default
    from bastion.defenses.text.training import score_eval_split

    with user_errors():
        if not out.parent.is_dir():
            raise InputError(f"--out {out}: the folder {out.parent} does not exist")
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; give the classifier file to write, e.g. {out / out.name}.json")
        texts = shipped_calibration_texts() if data is None else read_benign_texts(data)
        # a fresh load of the shipped one: load_default's cached instance serves the rest of the process
        model = load_default.__wrapped__() if classifier is None else _classifier(classifier, False)
        result = calibrate(model, texts, max_fpr=max_fpr, source=CALIBRATION_FILE if data is None else data.name)
        apply_calibration(model, result)
        if evaluate:
            model.evaluation_ = score_eval_split(model)
        model.save(out)
    console.print_json(json.dumps(result.as_record()))
    if result.threshold is None:
        console.print(f"no threshold up to 0.95 keeps the guard within {max_fpr:.1%} of these prompts "
                      f"({result.flagged_by_rules} of {result.texts} flagged by the rules alone); the threshold "
                      f"stays {result.previous_threshold:.4f}. Wrote {out}", highlight=False)
        raise typer.Exit(1)
    console.print(f"threshold {result.previous_threshold:.4f} -> {result.threshold:.3f}: {result.flagged} of "
                  f"{result.texts} benign prompts flagged ({result.flagged_by_rules} by rules); wrote {out}"
                  + (f" and {adapter_path(out)}" if model.adapter_ is not None else ""), highlight=False)


def _classifier(path: Path | None, rules_only: bool, threshold: float | None = None,
                long_threshold: float | None = None) -> object:
    """The guard's classifier argument. ``threshold`` and ``long_threshold`` (``--threshold``, ``--long-threshold``)
    are checked here, so that an error names the option, and refused with ``--rules-only``, which has no
    classifier for them to apply to."""
    from bastion.defenses.text.guard import check_threshold

    check_threshold("--threshold", threshold)
    check_threshold("--long-threshold", long_threshold)
    if rules_only:
        if path is not None:
            raise InputError("--rules-only and --classifier contradict each other: give one")
        if threshold is not None or long_threshold is not None:
            raise InputError("--threshold and --long-threshold set the classifier's thresholds, and --rules-only "
                             "skips the classifier: give one or the other")
        return None
    if path is None:
        return "default"
    from bastion.defenses.text.classifier import InjectionClassifier

    return InjectionClassifier.load(path)


def _read_text(text: str | None, file: Path | None, max_chars: int) -> str:
    if text is not None and text != "-" and file is not None:
        raise InputError("give the text as an argument or with --file, not both")
    if file is not None:
        return _read_file(file, "--file")
    if text is not None and text != "-":
        return text
    if sys.stdin.isatty():
        raise InputError("no text given: pass it as an argument, with --file, or on standard input")
    return _read_stdin(max_chars)


def _read_stdin(max_chars: int) -> str:
    """Standard input as UTF-8 text of at most ``max_chars`` characters (``InputError`` otherwise). Read as bytes
    and decoded here: the text stream would decode bytes that are not UTF-8 by the locale's rules (an exception,
    or lone surrogates under the C locale)."""
    too_long = InputError(f"standard input holds more than the limit of {max_chars:,} characters: screen it in "
                          "parts, or raise --max-chars")
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stream stands in for standard input
        text = sys.stdin.read(max_chars + 1)
    else:
        most = 4 * (max_chars + 1)  # UTF-8 takes at most 4 bytes a character
        data = stream.read(most)
        if len(data) >= most:  # at least max_chars + 1 whole characters, whatever the last bytes hold
            raise too_long
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"standard input is not UTF-8 text (byte {error.start}): convert it first") from None
    if len(text) > max_chars:
        raise too_long
    return text


def _read_file(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{option} {path}: no such file") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{option} {path} is not UTF-8 text (byte {error.start}): convert it first") from None
    except OSError as error:
        raise InputError(f"cannot read {option} {path}: {error.strerror or error}") from None


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the folder {path}: {error.strerror or error}") from error


def _report(verdict: Verdict, as_json: bool, what: str) -> None:
    if as_json:
        sys.stdout.write(verdict.model_dump_json(indent=2) + "\n")
    else:
        _print_verdict(verdict, what)
    if verdict.flagged:
        raise typer.Exit(1)


def _print_verdict(verdict: Verdict, what: str) -> None:
    from rich.text import Text

    # The classifier's threshold, where its probability is what the score shows (not a rule's match).
    learned = not verdict.flagged or any(finding.layer == "classifier" for finding in verdict.findings)
    against = f" (classifier threshold {verdict.threshold:g})" if verdict.threshold is not None and learned else ""
    if verdict.flagged:
        console.print(Text.assemble(("FLAGGED", "bold red"), f"  {what}: {', '.join(verdict.categories)}  "
                                    f"score {verdict.score:.4f}{against}"))
    else:
        console.print(Text.assemble(("CLEAN", "bold green"), f"  score {verdict.score:.4f}{against}"))
    for finding in verdict.findings:
        where = "after " + " > ".join(finding.path) if finding.path else "as sent"
        evidence = f" {finding.evidence!r}" if finding.evidence else ""
        console.print(Text.assemble("  ", (f"{finding.layer}/{finding.rule}", "bold"), f" ({finding.category}, "
                                    f"{where}): ", printable(finding.reason.rstrip(".") + "." + evidence)))
    counts = {key: value for key, value in verdict.stats.items() if value and key != "chars"}
    if counts:
        console.print("  normalisation: " + ", ".join(f"{key} {value}" for key, value in counts.items()),
                      highlight=False)


def _print_evaluation(evaluation: GuardEvaluation) -> None:
    from rich.table import Table

    table = Table("category", "texts", "precision", "recall", "false positives")
    for row in evaluation.categories:
        table.add_row(row.category, str(row.count), _percent(row.precision), _percent(row.recall),
                      _percent(row.false_positive_rate))
    console.print(table)
    if evaluation.overt_recall is not None or evaluation.benign_trigger_fpr is not None:
        console.print(_headline(evaluation), highlight=False)
    weakest = [row for row in evaluation.families if row.label][:3]
    if weakest:
        console.print("weakest injection families: " + ", ".join(
            f"{row.family} ({row.category}) {_percent(row.rate)}" for row in weakest), highlight=False)


def _headline(evaluation: GuardEvaluation) -> str:
    """The acceptance figures with their 95% intervals and the verdict, on one line."""
    methods = evaluation.interval_method
    recall = _with_interval(evaluation.overt_recall, evaluation.overt_recall_interval, methods.get("overt_recall"))
    fpr = _with_interval(evaluation.benign_trigger_fpr, evaluation.benign_trigger_fpr_interval,
                         methods.get("benign_trigger_fpr"))
    verdict = {None: "not judged", True: "met", False: "not met"}[evaluation.meets_target]
    return (f"overt recall {recall}, false positives on benign-trigger prompts {fpr}; target (recall >= "
            f"{evaluation.target_overt_recall:.0%} at <= {evaluation.target_trigger_fpr:.0%}): {verdict}")


def _with_interval(value: float | None, interval: tuple[float, float] | None, method: str | None) -> str:
    if value is None:
        return "–"
    if interval is None:
        return _percent(value)
    by = " by family" if method == "families" else ""
    return f"{_percent(value)} (95% interval{by} {_percent(interval[0])}–{_percent(interval[1])})"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
