"""``bastion monitor report``: has the traffic a served model sees drifted? Read two windows of the gateway's
audit log, run the drift tests, write ``drift.json`` and ``drift.html``.

Windows are chosen by time (``--reference-since/--reference-until``, ``--current-since/--current-until``;
an open end of one window defaults to the start or end of the other) or by count (``--reference-first N``:
the oldest N logged requests, ``--current-last M``: the newest M; neither: the older and newer half).
Each window is chosen one way, not both (``--reference-first`` with ``--reference-since`` is refused); a
window chosen by count next to one chosen by time takes its N (or M) records on its side of the other.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, user_errors
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bastion.monitor.drift import DriftReport, TrafficWindow

monitor_app = typer.Typer(
    name="monitor",
    help="Watch a served model in production: 'report' checks the traffic in the gateway's audit log for drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Time = Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-11-20T08:00 (UTC unless it has an offset).",
                                          show_default=False)]


@monitor_app.command("report")
def report_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for drift.json and drift.html.", show_default=False)],
    model: Annotated[str | None, typer.Option(help="The served model's name (default: the only one logged).",
                                              show_default=False)] = None,
    home: Annotated[Path | None, typer.Option(help="Folder of bastion's state. Default: $BASTION_HOME, else "
                                              "./.bastion.", show_default=False)] = None,
    database: Annotated[str | None, typer.Option(help="Database URL. Default: $BASTION_DATABASE_URL, else the "
                                                 "SQLite file in --home.", show_default=False)] = None,
    reference_since: Time = None,
    reference_until: Time = None,
    current_since: Time = None,
    current_until: Time = None,
    reference_first: Annotated[int | None, typer.Option(help="The reference window: the oldest N logged requests "
                                                        "(not with --reference-since/--reference-until).",
                                                        show_default=False)] = None,
    current_last: Annotated[int | None, typer.Option(help="The current window: the newest M logged requests "
                                                     "(not with --current-since/--current-until).",
                                                     show_default=False)] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of each test, strictly between 0 and 1.")] = 0.01,
    fail_on_alert: Annotated[bool, typer.Option("--fail-on-alert", help="Exit with code 1 when a drift alert "
                                                "fires (for cron jobs and CI).")] = False,
) -> None:
    """Compare a reference window of logged traffic with a current one; print a summary, write the report."""
    from bastion.monitor.drift import DriftThresholds, drift_report
    from bastion.monitor.report import write_drift_report
    from bastion.scan.report.writer import report_folder
    from bastion.storage.database import open_database

    with user_errors():
        _check_alpha(alpha)
        _check_one_way(reference_first=reference_first, current_last=current_last, reference_since=reference_since,
                       reference_until=reference_until, current_since=current_since, current_until=current_until)
        times = {name: _parse_time(text, name) for name, text in (
            ("--reference-since", reference_since), ("--reference-until", reference_until),
            ("--current-since", current_since), ("--current-until", current_until))}
        thresholds = DriftThresholds(alpha=alpha, permutations=_permutations(alpha))
        with report_folder(out):  # a failed run leaves no new, empty folder behind
            with open_database(database, home=home, create=False) as opened, opened.sessions() as session:
                reference, current = _windows(session, model, times, reference_first, current_last)
            report = drift_report(reference, current, thresholds=thresholds)
            html = write_drift_report(report, reference, current, out)
    _print_summary(report)
    console.print(f"report: {html}", highlight=False, soft_wrap=True)
    if fail_on_alert and report.drifted:
        raise typer.Exit(1)


def _windows(session: Session, model: str | None, times: dict[str, datetime | None], reference_first: int | None,
             current_last: int | None) -> tuple[TrafficWindow, TrafficWindow]:
    """The two windows the options ask for (by time when any time is given, else by count)."""
    from bastion.monitor.traffic import read_window, split_windows

    if not any(times.values()):
        return split_windows(session, model=model, reference_first=reference_first, current_last=current_last)
    reference_since, current_until = times["--reference-since"], times["--current-until"]
    reference_until = times["--reference-until"] or times["--current-since"]
    current_since = times["--current-since"] or reference_until
    if reference_until is None:
        raise InputError("give --reference-until or --current-since: where the reference window ends")
    for name, since, until in (("reference", reference_since, reference_until),
                               ("current", current_since, current_until)):
        if since is not None and until is not None and since >= until:
            raise InputError(f"the {name} window starts at or after its end: check --{name}-since and --{name}-until")
    if current_since is not None and current_since < reference_until:
        raise InputError("the windows overlap: --current-since must not be before --reference-until")
    reference = read_window(session, model=model, since=reference_since, until=reference_until,
                            limit=reference_first, name="reference")
    current = read_window(session, model=model, since=current_since, until=current_until, limit=current_last,
                          newest=True, name="current")
    return reference, current


def _check_alpha(alpha: float) -> None:
    """``alpha`` is a probability strictly between 0 and 1 (NaN and infinities are not)."""
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise InputError(f"--alpha must be a number strictly between 0 and 1, such as 0.01; got {alpha:g}")


def _check_one_way(**options: int | str | None) -> None:
    """Each window is chosen by time or by count, not both."""
    for count, since, until in (("reference_first", "reference_since", "reference_until"),
                                ("current_last", "current_since", "current_until")):
        given = [name for name in (since, until) if options[name] is not None]
        if options[count] is not None and given:
            flag = "--" + count.replace("_", "-")
            times = "/".join("--" + name.replace("_", "-") for name in given)
            raise InputError(f"{flag} and {times} are two ways of choosing the {count.split('_')[0]} window: choose "
                             "it by count or by time, not both")


def _permutations(alpha: float) -> int:
    """200, or enough for the permutation p-values to go well below a smaller ``alpha``."""
    return max(200, math.ceil(2 / alpha)) if 0 < alpha < 1 else 200


def _parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO time as aware UTC (naive: UTC); ``None`` stays ``None``."""
    from bastion.monitor.traffic import to_utc

    if text is None:
        return None
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError:
        raise InputError(f"{option} must be an ISO time such as 2026-11-20T08:00 or 2026-11-20T08:00+01:00; "
                         f"got {text!r}") from None


def _print_summary(report: DriftReport) -> None:
    from rich.table import Table

    console.print(f"reference: {report.reference.label} ({report.reference.count:,} instances)", highlight=False)
    console.print(f"current:   {report.current.label} ({report.current.count:,} instances)", highlight=False)
    table = Table("test", "statistic", "p-value", "alerts at", "result")
    for test in report.tests:
        p_value = "-" if test.p_value is None else f"{test.p_value:.3g}"
        rule = f"PSI ≥ {test.threshold:g}" if test.name == "psi" else f"p < {test.threshold:g}"
        result = "[bold red]ALERT[/]" if test.alert else "[green]ok[/]"
        table.add_row(test.title, f"{test.statistic:.4g}", p_value, rule, result)
    console.print(table)
    for alert in report.alerts:
        console.print(f"[bold red]drift:[/] {alert}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]watch:[/] {note}", highlight=False, soft_wrap=True)
    if not report.drifted:
        console.print("[green]no drift detected[/]")
