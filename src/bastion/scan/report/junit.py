"""A scan as JUnit XML, so any CI system shows the robustness gate as a test.

One testcase per eps, named ``robust_accuracy@eps=<eps>``. Only the headline (first) eps is
gated: it fails when ``fail_under`` is set and its robust accuracy is below it. The other eps are
informational and always pass, with their numbers in ``<system-out>``. Sanity flags are warnings,
never failures: they appear as suite ``<properties>`` and in the testcase's ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from bastion.core.records import EpsResult, ScanRecord
from bastion.scan.report._common import format_eps, percent, write_text_atomically

SUITE_NAME = "bastion.scan"
# Characters XML 1.0 cannot hold at all, even escaped; ElementTree would write them as they are.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def write_junit(record: ScanRecord, path: str | Path) -> Path:
    """Write ``record`` as a JUnit XML report at ``path``.

    Raises:
        InputError: ``path`` cannot be written.
    """
    tree = ET.ElementTree(junit_element(record))
    ET.indent(tree)
    text = ET.tostring(tree.getroot(), encoding="unicode", xml_declaration=False)
    declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return write_text_atomically(Path(path), declaration + text + "\n")


def junit_element(record: ScanRecord) -> ET.Element:
    """``<testsuites>`` holding the single ``bastion.scan`` suite, counts filled in."""
    failures = sum(1 for position in range(len(record.results)) if _fails(record, position))
    seconds = f"{sum(result.seconds for result in record.results):.3f}"
    counts = {"tests": str(len(record.results)), "failures": str(failures), "errors": "0",
              "skipped": "0", "time": seconds}
    root = ET.Element("testsuites", {"name": "bastion", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": SUITE_NAME, **counts, "timestamp": record.created_at.isoformat(),
    })
    _properties(suite, record)
    for position, result in enumerate(record.results):
        _testcase(suite, record, result, position)
    return root


def _fails(record: ScanRecord, position: int) -> bool:
    """Only the headline eps is gated; other budgets are informational."""
    return position == 0 and not record.passed()


def _properties(suite: ET.Element, record: ScanRecord) -> None:
    properties = ET.SubElement(suite, "properties")
    values = {
        "model": record.model.description,
        "model.sha256": record.model.sha256 or "",
        "data": record.data.description,
        "data.sha256": record.data.sha256,
        "suite": record.config.suite,
        "norm": record.config.norm,
        "seed": str(record.config.seed),
        "fail_under": "" if record.config.fail_under is None else repr(record.config.fail_under),
        "bastion.version": record.bastion_version,
    }
    for result in record.results:
        for flag in result.flags:
            values[f"sanity.{flag.check}@eps={format_eps(result.eps)}"] = (
                f"{flag.severity}: {flag.message}"
            )
    for name, value in values.items():
        ET.SubElement(properties, "property", {"name": _clean(name), "value": _clean(value)})


def _testcase(suite: ET.Element, record: ScanRecord, result: EpsResult, position: int) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": SUITE_NAME,
        "name": f"robust_accuracy@eps={format_eps(result.eps)}",
        "time": f"{result.seconds:.3f}",
    })
    if _fails(record, position):
        message = (f"robust accuracy {percent(result.robust_accuracy)} < fail-under "
                   f"{percent(record.config.fail_under)} at eps={format_eps(result.eps)}")
        failure = ET.SubElement(
            case, "failure", {"message": message, "type": "RobustnessBelowThreshold"}
        )
        failure.text = _clean(_summary(record, result, position))
    system_out = ET.SubElement(case, "system-out")
    system_out.text = _clean(_summary(record, result, position))


def _summary(record: ScanRecord, result: EpsResult, position: int) -> str:
    """Plain-text numbers for one eps: the gate, each attack, each sanity flag."""
    if position != 0:
        gate = "informational (only the headline eps is gated)"
    elif record.config.fail_under is None:
        gate = "headline eps; no fail-under threshold set"
    else:
        gate = f"headline eps; gated at fail-under {percent(record.config.fail_under)}"
    lines = [
        f"eps={format_eps(result.eps)} ({record.config.norm}): {gate}",
        f"clean accuracy {percent(result.clean_accuracy)}, "
        f"robust accuracy {percent(result.robust_accuracy)}",
    ]
    for attack in result.attacks:
        if attack.skipped:
            lines.append(f"  {attack.name}: skipped ({attack.skipped})")
        else:
            lines.append(f"  {attack.name}: broke {attack.points_broken}/{attack.points_attacked}, "
                         f"robust after {percent(attack.robust_accuracy_after)}, "
                         f"{attack.queries} queries, {attack.seconds:.2f} s")
    lines.extend(f"  WARNING sanity check {flag.check} ({flag.severity}): {flag.message}"
                 for flag in result.flags)
    return "\n".join(lines)


def _clean(text: str) -> str:
    """Drop characters XML cannot represent (ElementTree escapes <, &, quotes itself)."""
    return _XML_INVALID.sub("", text)
