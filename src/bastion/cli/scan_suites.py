"""``bastion scan --suite privacy`` and ``--suite extraction``: the options, the runs and the terminal summary.

Imported when the CLI starts, so it imports nothing heavy at module level: the workflows (torch) are
imported by the functions that run them.

Which model: exactly one of ``--model`` (a file or ``pkg.module:factory``; an ``http(s)://`` URL there
counts as an endpoint) and ``--endpoint URL``. The API key of an endpoint comes from ``--api-key`` or
the ``BASTION_API_KEY`` environment variable and is never printed or written to a report.

``--budget``: for ``--suite extraction`` the most queries of each extraction run (default 5000); the
endpoint client is then capped at ``4 x budget`` plus the held-out samples (four runs: two strategies,
probabilities and labels; answers are kept by content, so a sample asked again costs nothing). For the
other suites, the most samples sent to an ``--endpoint`` (default: no limit).

Extraction data: ``--data`` is the attacker's pool; ``--eval-data`` the held-out data fidelity is
measured on. Without ``--eval-data``, 20% of ``--data`` is held out, chosen by sample id
(:func:`~bastion.workflows.extraction.held_out_split`), the rest is the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bastion.cli.console import console
from bastion.cli.model_options import load_data_from_options, load_model_from_options
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.defenses.training.dp import PrivacyAccounting
    from bastion.models.loading import LoadedModel
    from bastion.scan.engine import ScanEngine
    from bastion.workflows.privacy_records import ExtractionScanRecord, PrivacyRecord

#: The suites this module runs; the others are evasion suites (:mod:`bastion.scan.suites`).
DATA_SUITES = ("privacy", "extraction")
#: Default query budget of each extraction run.
DEFAULT_EXTRACTION_BUDGET = 5000
#: Extraction runs that may query an endpoint: two strategies, each learning from probabilities and labels.
EXTRACTION_RUNS = 4


@dataclass(frozen=True)
class TargetOptions:
    """The command line's description of the model under test (strings as typed)."""

    model: str | None
    endpoint: str | None
    weights: str | None = None
    api_key: str | None = field(default=None, repr=False)  # a secret: never in a repr or a message
    journal: Path | None = None
    input_shape: str | None = None
    num_classes: int | None = None
    bounds: str = "0,1"
    mean: str | None = None
    std: str | None = None

    def spec(self) -> str:
        """The one model spec given: ``--model`` or ``--endpoint``; errors for both or neither."""
        if self.model is not None and self.endpoint is not None:
            raise InputError("pass either --model or --endpoint, not both: --endpoint URL replaces --model for a "
                             "live model served over HTTP")
        spec = self.endpoint if self.endpoint is not None else self.model
        if spec is None:
            raise InputError("pass --model MODEL (a model file or pkg.module:factory) or --endpoint URL (a live "
                             "model, https://host/v2/models/NAME)")
        if self.endpoint is not None and not _is_url(self.endpoint):
            raise InputError(f"--endpoint must be an http(s):// URL such as https://host/v2/models/NAME, got "
                             f"{self.endpoint!r}; a model file goes in --model")
        return spec

    @property
    def remote(self) -> bool:
        return _is_url(self.endpoint or self.model or "")

    def check(self, budget: int | None, *, budget_for_extraction: bool) -> None:
        """Refuse options that do not fit the target, before anything is loaded."""
        self.spec()
        if budget is not None and budget < 1:
            raise InputError(f"--budget must be a number of queries >= 1, got {budget}")
        if not self.remote:
            for name, value in (("--api-key", self.api_key), ("--journal", self.journal)):
                if value is not None:
                    raise InputError(f"{name} applies to a live model: pass --endpoint URL")
            if budget is not None and not budget_for_extraction:
                raise InputError("--budget limits the queries of --suite extraction, or the samples sent to an "
                                 "--endpoint; a local model needs none here")

    def load(self, endpoint_budget: int | None = None) -> LoadedModel:
        """Load the model or connect to the endpoint (``endpoint_budget``: the most samples it may be sent)."""
        remote_options = {"api_key": self.api_key, "budget": endpoint_budget,
                          "journal": self.journal} if self.remote else {}
        return load_model_from_options(self.spec(), self.weights, self.input_shape, self.num_classes, self.bounds,
                                       self.mean, self.std, **remote_options)


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _say(line: str) -> None:
    console.print(f"[dim]{line}[/]", highlight=False)


def run_privacy_suite(
    target: TargetOptions, *, data: str, train_data: str | None, out: Path, seed: int, batch_size: int,
    limit: int | None, budget: int | None, shadows: int | None, shadow_epochs: int | None, shadow_model: str | None,
    label_column: str, schema: Path | None, engine: ScanEngine | None = None,
) -> dict[str, Path]:
    """Check the options, load model and data, run the privacy scan, write and summarise the reports (LiRA's
    shadows trained on ``engine``, default here)."""
    from bastion.scan.report.writer import report_folder
    from bastion.workflows.privacy import run_privacy_scan
    from bastion.workflows.privacy_records import PrivacySettings
    from bastion.workflows.privacy_report import write_privacy_reports

    if train_data is None:
        raise InputError("--suite privacy needs --train-data: the data the model was trained on (the members); "
                         "--data is then data it was not trained on (the non-members), e.g. the test set")
    target.check(budget, budget_for_extraction=False)
    _at_least(shadows, 2, "--shadows", "LiRA needs one shadow trained with and one without each example")
    _at_least(shadow_epochs, 1, "--shadow-epochs", "")
    _at_least(batch_size, 1, "--batch-size", "")
    accountant = _dp_accounting(target.weights)
    settings = PrivacySettings(seed=seed, batch_size=batch_size, shadow_model=shadow_model,
                               delta=accountant.delta if accountant is not None else None,
                               **_given(shadows=shadows, shadow_epochs=shadow_epochs))
    with report_folder(out):  # a failed scan leaves no new, empty report folder behind
        members = load_data_from_options(train_data, label_column, schema, limit)
        non_members = load_data_from_options(data, label_column, schema, limit)
        loaded = target.load(endpoint_budget=budget)
        record = run_privacy_scan(loaded, members, non_members, settings, model_spec=target.model, progress=_say,
                                  engine=engine)
        record = record.model_copy(update={"accountant": accountant})
        paths = write_privacy_reports(record, out)
    print_privacy_summary(record)
    return paths


def _dp_accounting(weights: str | None) -> PrivacyAccounting | None:
    """The DP accountant's guarantee ``bastion train --dp-*`` wrote beside ``weights``, if any."""
    from pydantic import ValidationError

    from bastion.defenses.training.dp import DPTrainingRecord

    if weights is None or not Path(weights).with_suffix(".privacy.json").is_file():
        return None
    sidecar = Path(weights).with_suffix(".privacy.json")
    try:
        return DPTrainingRecord.model_validate_json(sidecar.read_text()).privacy
    except (ValidationError, ValueError) as error:
        raise InputError(f"{sidecar} is not a DP training record written by 'bastion train --dp-*' ({error}); "
                         "move it away or fix it") from error


def run_extraction_suite(
    target: TargetOptions, *, data: str, eval_data: str | None, out: Path, seed: int, limit: int | None,
    budget: int | None, copy_model: str | None, copy_epochs: int | None, label_column: str, schema: Path | None,
) -> dict[str, Path]:
    """Check the options, load victim and data, run the extraction scan, write and summarise the reports."""
    from bastion.scan.report.writer import report_folder
    from bastion.workflows.extraction import HELD_OUT_FRACTION, held_out_split, run_extraction_scan
    from bastion.workflows.privacy_records import ExtractionSettings
    from bastion.workflows.privacy_report import write_extraction_reports

    target.check(budget, budget_for_extraction=True)
    _at_least(copy_epochs, 1, "--copy-epochs", "")
    epochs = {} if copy_epochs is None else {"copy_epochs": copy_epochs, "copy_min_steps": 0}
    settings = ExtractionSettings(budget=DEFAULT_EXTRACTION_BUDGET if budget is None else budget, seed=seed,
                                  copy_model=copy_model, **epochs)
    with report_folder(out):  # a failed scan leaves no new, empty report folder behind
        dataset = load_data_from_options(data, label_column, schema, limit)
        if eval_data is None:
            pool, held_out = held_out_split(dataset)
            source = f"{HELD_OUT_FRACTION:.0%} of --data held out by sample id (the rest is the attacker's pool)"
        else:
            pool, held_out = dataset, load_data_from_options(eval_data, label_column, schema)
            source = f"--eval-data {eval_data}"
        cap = EXTRACTION_RUNS * settings.budget + len(held_out)
        loaded = target.load(endpoint_budget=cap)
        record = run_extraction_scan(loaded, pool, held_out, settings, eval_source=source,
                                     model_spec=target.model, progress=_say)
        paths = write_extraction_reports(record, out)
    print_extraction_summary(record)
    return paths


def _at_least(value: int | None, minimum: int, option: str, why: str) -> None:
    if value is not None and value < minimum:
        reason = f" ({why})" if why else ""
        raise InputError(f"{option} must be >= {minimum}{reason}, got {value}")


def _given(**values: int | None) -> dict[str, int]:
    """The options the user gave (not ``None``), so the settings' defaults apply to the rest."""
    return {name: value for name, value in values.items() if value is not None}


def print_privacy_summary(record: PrivacyRecord) -> None:
    """The attacks' headline numbers, the defense table, the epsilon bound and the notes."""
    table = Table(title=f"membership inference — {record.members.count:,} members, {record.non_members.count:,} "
                  f"non-members (accuracy {record.train_accuracy:.1%} / {record.test_accuracy:.1%})")
    for column in ("attack", "ROC AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for result in record.attacks:
        table.add_row(result.attack, f"{result.auc:.3f}", f"{result.tpr_at_1pct:.1%}", f"{result.tpr_at_01pct:.1%}")
    console.print(table)
    defenses = Table(title="output defenses: membership TPR @ 1% FPR against their cost")
    for column in ("defense", "answers", "loss AUC", "loss TPR@1%", "LiRA TPR@1%", "accuracy cost", "distortion"):
        defenses.add_column(column, justify="left" if column in ("defense", "answers") else "right")
    for row in record.defenses:
        defenses.add_row(row.defense, row.access, f"{row.loss.auc:.3f}", f"{row.loss.tpr_at_1pct:.1%}",
                         f"{row.lira.tpr_at_1pct:.1%}" if row.lira else "-",
                         f"{100 * row.cost.cost:.1f} pts" if row.cost else "-",
                         f"{row.cost.distortion:.3f}" if row.cost else "-")
    console.print(defenses)
    if record.epsilon is not None:
        console.print(f"empirical epsilon lower bound: {record.epsilon.epsilon:.2f} at delta {record.epsilon.delta:g} "
                      f"({record.epsilon_attack})", highlight=False)
    if record.accountant is not None:
        console.print(f"DP accountant's epsilon of the training: {record.accountant.epsilon:.2f} at delta "
                      f"{record.accountant.delta:g} ({record.accountant.accountant}; from the weights' "
                      ".privacy.json)", highlight=False)
    if record.inversion is not None:
        console.print(f"model inversion: {len(record.inversion.classes)} classes reconstructed, mean confidence "
                      f"{sum(record.inversion.confidences) / len(record.inversion.confidences):.3f}", highlight=False)
    _print_notes(record.notes)


def print_extraction_summary(record: ExtractionScanRecord) -> None:
    """Each run's final fidelity and accuracy with its curve, the defense table and the notes."""
    table = Table(title=f"extraction — copies of {record.copy_model}, victim accuracy {record.victim_accuracy:.1%}")
    for column in ("run", "queries", "fidelity", "copy accuracy", "fidelity by queries"):
        table.add_column(column, justify="left" if column in ("run", "fidelity by queries") else "right")
    for run in record.runs:
        final = run.record
        curve = "  ".join(f"{point.queries:,}: {point.fidelity:.0%}" for point in final.curve)
        table.add_row(run.name, f"{final.queries:,}", f"{final.fidelity:.1%}",
                      f"{final.accuracy:.1%}" if final.accuracy is not None else "-", curve)
    console.print(table)
    if record.defenses:
        defenses = Table(title="output defenses: fidelity of a copy (random queries) against their cost")
        for column in ("defense", "answers", "fidelity", "copy accuracy", "accuracy cost", "distortion"):
            defenses.add_column(column, justify="left" if column in ("defense", "answers") else "right")
        for row in record.defenses:
            defenses.add_row(row.defense, row.access, f"{row.fidelity:.1%}",
                             f"{row.accuracy:.1%}" if row.accuracy is not None else "-",
                             f"{100 * row.cost.cost:.1f} pts", f"{row.cost.distortion:.3f}")
        console.print(defenses)
    print_endpoint(record.endpoint)
    _print_notes(record.notes)


def print_endpoint(endpoint: dict[str, Any] | None) -> None:
    """The line that says what a live endpoint was sent and what the cache answered (nothing for a local model)."""
    if endpoint is not None:
        console.print(f"endpoint: {endpoint['samples_sent']:,} samples sent, "
                      f"{endpoint['served_from_cache']:,} answered from the cache", highlight=False)


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[cyan]note:[/] {note}", highlight=False)


def data_suite_conflicts(suite: str, options: dict[str, object]) -> None:
    """Refuse options of another kind of suite: ``options`` maps an option (``--train-data``) to its value,
    ``None`` or ``False`` when not given."""
    applies = {
        "--train-data": "privacy", "--shadows": "privacy", "--shadow-epochs": "privacy", "--shadow-model": "privacy",
        "--copy-model": "extraction", "--copy-epochs": "extraction", "--eval-data": "extraction",
        "--attacks": "evasion", "--preprocess": "evasion", "--eot-samples": "evasion", "--fail-under": "evasion",
        "--targeted": "evasion", "--access": "evasion", "--eps": "evasion", "--norm": "evasion",
        "--shards": "evasion",
    }
    kind = suite if suite in DATA_SUITES else "evasion"
    for name, value in options.items():
        if value is None or value is False:
            continue
        wanted = applies[name]
        if wanted != kind:
            where = f"--suite {wanted}" if wanted in DATA_SUITES else "the evasion suites (quick, standard, full)"
            raise InputError(f"{name} applies to {where}, not to --suite {suite}")
