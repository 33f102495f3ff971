"""Scan reports: JSON round trip, self-contained HTML, SARIF 2.1.0, JUnit gate, report folder."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bastion.core.errors import InputError
from bastion.core.records import (
    ArtifactRef,
    AttackSummary,
    ClassRow,
    DatasetRef,
    EpsResult,
    SampleRecord,
    SanityFlag,
    ScanConfig,
    ScanRecord,
)
from bastion.scan.adaptive import compare_passes, gap_flags
from bastion.scan.defense_record import DefenseRef, DefenseScanRecord, DefenseStepRef
from bastion.scan.outcome import ExampleGrid, ScanOutcome
from bastion.scan.report.advice import advise, explain_flag
from bastion.scan.report.html import render_html, write_html
from bastion.scan.report.json_report import read_defense_json, read_json, write_json
from bastion.scan.report.junit import write_junit
from bastion.scan.report.plots import example_grid_plot, robust_accuracy_plot
from bastion.scan.report.sarif import write_sarif
from bastion.scan.report.writer import write_reports

HOSTILE = "<script>alert('x')</script>"
CLASS_NAMES = ["cat", "dog", HOSTILE]
EPS = [0.1, 0.3]
MODEL = "models/digits net.pt"
FLAG_MESSAGES = [
    "outputs sum to 1 on every input: the model returns probabilities, not logits",
    "square broke 1 point that pgd could not <b>bold</b>",
]
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sample_id(index: int) -> str:
    return hashlib.sha256(f"sample {index}".encode()).hexdigest()


def _attacks(eps: float) -> list[AttackSummary]:
    """fgsm then pgd ran; square was skipped (the model gives labels only)."""
    strong = eps > 0.2
    return [
        AttackSummary(name="fgsm", params={"eps": eps}, access="white", points_attacked=9,
                      points_broken=6 if strong else 3,
                      robust_accuracy_after=0.3 if strong else 0.6, queries=18, seconds=0.12),
        AttackSummary(name="pgd", params={"steps": 40}, access="white",
                      points_attacked=3 if strong else 6, points_broken=2,
                      robust_accuracy_after=0.1 if strong else 0.4, queries=480, seconds=1.5),
        AttackSummary(name="square", params={}, access="scores", skipped="needs scores access"),
    ]


def _samples(robust_count: int) -> list[SampleRecord]:
    samples = []
    for index, label in enumerate(LABELS.tolist()):
        clean_ok = index != 9
        robust = clean_ok and index < robust_count
        broken = clean_ok and not robust
        samples.append(SampleRecord(
            index=index, sample_id=_sample_id(index), label=label,
            clean_prediction=label if clean_ok else (label + 1) % 3,
            adversarial_prediction=label if robust else (label + 1) % 3,
            robust=robust, broken_by="pgd" if broken else None,
            distance=0.1 if broken else None, queries=40,
        ))
    return samples


def _per_class(robust: list[float]) -> list[ClassRow]:
    return [
        ClassRow(label=label, name=CLASS_NAMES[label], count=int((LABELS == label).sum()),
                 clean_accuracy=1.0 if label else 0.75, robust_accuracy=robust[label])
        for label in range(3)
    ]


def make_record(fail_under: float | None = 0.5) -> ScanRecord:
    """Headline eps 0.1: clean 90%, robust 40%; eps 0.3: robust 10%; two sanity flags."""
    results = [
        EpsResult(eps=0.1, clean_accuracy=0.9, robust_accuracy=0.4, attacks=_attacks(0.1),
                  per_class=_per_class([0.75, 0.33, 0.0]),
                  flags=[SanityFlag(check="probabilities_not_logits", message=FLAG_MESSAGES[0])],
                  samples=_samples(4), seconds=1.7),
        EpsResult(eps=0.3, clean_accuracy=0.9, robust_accuracy=0.1, attacks=_attacks(0.3),
                  per_class=_per_class([0.25, 0.0, 0.0]),
                  flags=[SanityFlag(check="black_box_beats_white_box", severity="info",
                                    message=FLAG_MESSAGES[1])],
                  samples=_samples(1), seconds=2.4),
    ]
    return ScanRecord(
        bastion_version="0.1.0",
        library_versions={"torch": "2.13.0", "numpy": "2.4.6"},
        config=ScanConfig(suite="standard", attacks=["fgsm", "pgd", "square"], norm="linf",
                          eps=EPS, bounds=(0.0, 1.0), targeted=False, access="white", seed=7,
                          batch_size=64, fail_under=fail_under),
        model=ArtifactRef(description=MODEL, sha256="a" * 64, kind="torch", access="white"),
        data=DatasetRef(description="sklearn digits (test split)", count=10, sha256="b" * 64,
                        input_shape=[1, 8, 8], num_classes=3),
        results=results,
        atlas_ids=["AML.T0043", "AML.T0015"],
        owasp_ids=["ML01:2023"],
    )


def make_grid(eps: float, shape: tuple[int, ...] = (1, 8, 8), count: int = 5) -> ExampleGrid:
    rng = np.random.default_rng(0)
    clean = rng.random((count, *shape), dtype=np.float32)
    adversarial = np.clip(clean + rng.uniform(-eps, eps, clean.shape), 0, 1).astype(np.float32)
    labels = np.resize(LABELS[5:], count)
    return ExampleGrid(
        eps=eps, sample_ids=[_sample_id(index) for index in range(5, 5 + count)],
        clean=clean, adversarial=adversarial, labels=labels, clean_predictions=labels,
        adversarial_predictions=(labels + 1) % 3, broken_by=["pgd"] * count,
    )


def make_outcome(
    record: ScanRecord | None = None, shape: tuple[int, ...] = (1, 8, 8)
) -> ScanOutcome:
    return ScanOutcome(record=record or make_record(), class_names=CLASS_NAMES,
                       examples=[make_grid(eps, shape) for eps in EPS])


class _Resources(HTMLParser):
    """Collects every src/href attribute and the names of all tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links.extend(value or "" for name, value in attrs if name in ("src", "href"))


# ---------------------------------------------------------------- JSON


def test_json_round_trip_gives_an_equal_record(tmp_path: Path) -> None:
    record = make_record()
    path = write_json(record, tmp_path / "scan.json")
    assert read_json(path) == record
    assert json.loads(path.read_text())["results"][0]["eps"] == 0.1


@pytest.mark.parametrize("content", ["{not json", '{"kind": "scan"}', "[]", '{"kind": "train"}'])
def test_read_json_rejects_malformed_or_invalid_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "scan.json"
    path.write_text(content)
    with pytest.raises(InputError, match="not a valid bastion scan record"):
        read_json(path)


def test_read_json_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read scan record"):
        read_json(tmp_path / "absent.json")


# ---------------------------------------------------------------- HTML


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(make_outcome())


def test_html_is_self_contained(page: str) -> None:
    parser = _Resources()
    parser.feed(page)
    assert parser.links, "the report should embed its plots"
    assert all(link.startswith("data:image/png;base64,") for link in parser.links)
    assert "http://" not in page and "https://" not in page
    assert not {"script", "link", "iframe", "object"} & set(parser.tags)
    assert "@import" not in page and "url(" not in page


def test_html_embeds_valid_pngs(page: str) -> None:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 1 + len(EPS)  # the curve, one grid per eps
    assert all(base64.b64decode(uri).startswith(PNG_MAGIC) for uri in uris)


def test_html_shows_headline_numbers_and_verdict(page: str) -> None:
    headline = page[page.index('id="headline"'):page.index('id="next"')]
    for text in ("90.0%", "40.0%", "0.1", MODEL, "sklearn digits", "L∞", "white-box", "50.0%"):
        assert text in headline
    assert "FAIL" in headline


def test_html_sections_come_in_order(page: str) -> None:
    ids = ["headline", "next", "curve", "attacks", "classes", "examples", "sanity", "taxonomy",
           "reproducibility"]
    positions = [page.index(f'id="{section}"') for section in ids]
    assert positions == sorted(positions)


def test_html_lists_attacks_classes_flags_and_provenance(page: str) -> None:
    for text in ("fgsm", "pgd", "square", "skipped: needs scores access", "cat", "dog",
                 FLAG_MESSAGES[0], "probabilities_not_logits", "Craft Adversarial Data",
                 "Evade ML Model", "Input Manipulation Attack", "ML01:2023", "a" * 64, "b" * 64,
                 "2.13.0", "<code>bastion train --adversarial-eps EPS</code>"):
        assert text in page, text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_html_escapes_a_hostile_class_name(page: str) -> None:
    assert HOSTILE not in page
    assert "<script" not in page
    assert "&lt;script&gt;" in page


def test_html_highlights_the_weakest_class(page: str) -> None:
    weak_rows = re.findall(r'<tr class="weak">\s*<td>([^<]*)', page)
    escaped_hostile = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    assert [name.strip() for name in weak_rows] == [escaped_hostile]


def test_html_renders_tabular_examples_as_a_feature_table(tmp_path: Path) -> None:
    outcome = make_outcome(shape=(12,))
    path = write_html(outcome, tmp_path / "scan.html")
    page = path.read_text(encoding="utf-8")
    assert page.count("<img") == 1  # the curve only, no image grid
    assert "Largest feature changes" in page
    assert re.search(r"x\[\d+\]: [\d.]+ → [\d.]+", page)


def test_html_rejects_an_inconsistent_example_grid() -> None:
    grid = make_grid(0.1)
    broken = ExampleGrid(**{**grid.__dict__, "broken_by": ["pgd"]})
    with pytest.raises(InputError, match="different lengths"):
        render_html(ScanOutcome(record=make_record(), class_names=CLASS_NAMES, examples=[broken]))


def test_html_without_threshold_or_examples_still_renders() -> None:
    outcome = ScanOutcome(record=make_record(fail_under=None), class_names=[], examples=[])
    page = render_html(outcome)
    assert "NO GATE" in page and "No examples were recorded" in page


# ---------------------------------------------------------------- plots and advice


def test_plots_return_png_and_skip_tabular_grids() -> None:
    assert robust_accuracy_plot(make_record()).startswith(PNG_MAGIC)
    assert example_grid_plot(make_grid(0.1, (3, 8, 8)), CLASS_NAMES).startswith(PNG_MAGIC)
    assert example_grid_plot(make_grid(0.1, (20,)), CLASS_NAMES) is None


def test_plots_leave_the_matplotlib_backend_alone() -> None:
    import matplotlib

    before = matplotlib.get_backend(auto_select=False)
    robust_accuracy_plot(make_record())
    example_grid_plot(make_grid(0.1), CLASS_NAMES)
    assert matplotlib.get_backend(auto_select=False) == before


def test_advice_follows_the_numbers() -> None:
    advice = advise(make_record())
    assert advice[0].level == "critical"
    titles = [item.title for item in advice]
    assert "Release gate fails" in titles
    assert "The evaluation may be unreliable" in titles
    assert any("bastion train --adversarial-eps" in item.detail for item in advice)
    robust = make_record(fail_under=None).model_copy(deep=True)
    robust.results[0].robust_accuracy = 0.88
    robust.results[0].flags = []
    robust.results[1].flags = []
    levels = {item.title: item.level for item in advise(robust)}
    assert levels["Robust accuracy holds up at the headline budget"] == "ok"
    assert "The evaluation may be unreliable" not in levels


# ---------------------------------------------------------------- SARIF


@pytest.fixture(scope="module")
def sarif(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = write_sarif(make_record(), tmp_path_factory.mktemp("sarif") / "scan.sarif")
    return json.loads(path.read_text(encoding="utf-8"))


def test_sarif_has_the_required_structure(sarif: dict) -> None:
    assert sarif["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert sarif["version"] == "2.1.0"
    assert len(sarif["runs"]) == 1
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["name"] == "bastion" and driver["version"] == "0.1.0"
    for rule in driver["rules"]:
        assert rule["id"] and rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert "helpUri" not in rule
        assert {"AML.T0043", "AML.T0015", "ML01:2023"} <= set(rule["properties"]["tags"])
    assert len({rule["id"] for rule in driver["rules"]}) == len(driver["rules"])
    for invocation in sarif["runs"][0]["invocations"]:
        assert isinstance(invocation["executionSuccessful"], bool)


def test_sarif_results_reference_rules_and_the_model(sarif: dict) -> None:
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert result["message"]["text"]
        assert result["level"] in {"error", "warning", "note", "none"}
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri == "models/digits%20net.pt"


def test_sarif_has_a_result_per_broken_attack_and_per_flag(sarif: dict) -> None:
    results = sarif["runs"][0]["results"]
    by_rule: dict[str, list[dict]] = {}
    for result in results:
        by_rule.setdefault(result["ruleId"], []).append(result)
    assert [r["level"] for r in by_rule["BASTION-EVASION-FGSM"]] == ["error", "note"]
    assert [r["level"] for r in by_rule["BASTION-EVASION-PGD"]] == ["error", "note"]
    assert "BASTION-EVASION-SQUARE" not in by_rule  # skipped, so it broke nothing
    assert [r["level"] for r in by_rule["BASTION-GRADIENT-MASKING"]] == ["warning", "note"]
    assert [r["level"] for r in by_rule["BASTION-ROBUSTNESS-BELOW-THRESHOLD"]] == ["error"]
    assert "3 of 9" in by_rule["BASTION-EVASION-FGSM"][0]["message"]["text"]
    assert "40.0%" in by_rule["BASTION-ROBUSTNESS-BELOW-THRESHOLD"][0]["message"]["text"]
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert all("square skipped" in note["message"]["text"] for note in notes) and len(notes) == 2


def test_sarif_has_no_threshold_result_when_the_gate_passes(tmp_path: Path) -> None:
    path = write_sarif(make_record(fail_under=0.3), tmp_path / "scan.sarif")
    results = json.loads(path.read_text())["runs"][0]["results"]
    assert all(result["ruleId"] != "BASTION-ROBUSTNESS-BELOW-THRESHOLD" for result in results)
    assert {r["level"] for r in results if r["ruleId"].startswith("BASTION-EVASION")} == {
        "warning", "note"}


def test_sarif_skips_attacks_that_broke_nothing(tmp_path: Path) -> None:
    record = make_record()
    record.results[1].attacks[1].points_broken = 0
    results = json.loads(write_sarif(record, tmp_path / "scan.sarif").read_text())["runs"][0]
    pgd = [r for r in results["results"] if r["ruleId"] == "BASTION-EVASION-PGD"]
    assert [r["properties"]["eps"] for r in pgd] == [0.1]


# ---------------------------------------------------------------- JUnit


@pytest.mark.parametrize(("fail_under", "fails"), [(0.5, True), (0.4, False), (0.3, False),
                                                   (None, False)])
def test_junit_fails_only_the_headline_eps_below_threshold(
    tmp_path: Path, fail_under: float | None, fails: bool
) -> None:
    path = write_junit(make_record(fail_under=fail_under), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "bastion.scan"
    cases = suite.findall("testcase")
    names = [case.get("name") for case in cases]
    assert names == ["robust_accuracy@eps=0.1", "robust_accuracy@eps=0.3"]
    assert suite.get("tests") == "2" and root.get("tests") == "2"
    assert suite.get("failures") == str(int(fails)) and root.get("failures") == str(int(fails))
    assert (cases[0].find("failure") is not None) == fails
    # eps=0.3 has 10% robust accuracy, below every threshold, yet it is informational only.
    assert cases[1].find("failure") is None
    assert "10.0%" in cases[1].findtext("system-out")


def test_junit_puts_sanity_flags_in_properties_and_output(tmp_path: Path) -> None:
    record = make_record()
    record.results[0].flags.append(SanityFlag(check="zero_gradients", message="bad\x07 & <odd>"))
    root = ET.parse(write_junit(record, tmp_path / "junit.xml")).getroot()
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["sanity.probabilities_not_logits@eps=0.1"].endswith(FLAG_MESSAGES[0])
    assert properties["sanity.zero_gradients@eps=0.1"] == "warning: bad & <odd>"
    assert properties["model.sha256"] == "a" * 64
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "40.0%" in failure.get("message", "")
    assert "probabilities_not_logits" in root.find("testsuite/testcase/system-out").text


# ---------------------------------------------------------------- writer


def test_write_reports_writes_every_file(tmp_path: Path) -> None:
    outcome = make_outcome()
    paths = write_reports(outcome, tmp_path / "nested" / "out")
    assert {kind: path.name for kind, path in paths.items()} == {
        "json": "scan.json", "html": "scan.html", "sarif": "scan.sarif", "junit": "junit.xml"}
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    assert read_json(paths["json"]) == outcome.record
    assert not list(paths["json"].parent.glob(".*"))  # no temporary file left behind


def test_write_reports_refuses_a_file_as_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("")
    with pytest.raises(InputError, match="is a file"):
        write_reports(make_outcome(), target)


# ---------------------------------------------------------------- defended scans (plain vs adaptive)


def make_defended_outcome() -> ScanOutcome:
    """A bits:3 defense: plain robust 90% and 80%, adaptive 40% and 10% (the make_record numbers)."""
    plain = make_record().model_copy(deep=True)
    for result, robust in zip(plain.results, (9, 8), strict=True):
        result.samples = _samples(robust)
        result.robust_accuracy = robust / 10
    adaptive = make_record()
    comparison = [compare_passes(p, a) for p, a in zip(plain.results, adaptive.results, strict=True)]
    adaptive.results[0].flags.append(SanityFlag(check="defense-hides-gradients",
                                                message="plain 90.0%, adaptive 40.0%"))
    step = DefenseStepRef(name="bits", params={"bits": 3}, differentiable=False, random=False,
                          adaptive_gradient="bpda")
    defense = DefenseScanRecord(
        bastion_version="0.1.0", defense=DefenseRef(spec="bits:3", steps=[step], draws=1, prediction="deterministic"),
        adaptive_gradients="bpda", eot_samples=8, hide_threshold=0.05, comparison=comparison, plain=plain)
    return ScanOutcome(record=adaptive, class_names=CLASS_NAMES, examples=[make_grid(eps) for eps in EPS],
                       defense=defense)


def test_compare_passes_measures_the_gap_and_the_worst_case() -> None:
    outcome = make_defended_outcome()
    first, second = outcome.defense.comparison
    assert first.plain_robust_accuracy == 0.9 and first.adaptive_robust_accuracy == 0.4
    assert first.gap == pytest.approx(0.5) and first.hides_gradients and outcome.defense.hides_gradients
    assert first.robust_under_both == 0.4 and first.broken_only_by_plain == 0
    swapped = compare_passes(outcome.record.results[1], outcome.defense.plain.results[1])
    assert swapped.broken_only_by_plain == 7 and swapped.robust_under_both == 0.1 and not swapped.hides_gradients


def test_html_shows_plain_and_adaptive_side_by_side() -> None:
    page = render_html(make_defended_outcome())
    ids = ["headline", "defense", "next", "attacks"]
    assert [page.index(f'id="{section}"') for section in ids] == sorted(page.index(f'id="{s}"') for s in ids)
    headline = page[page.index('id="headline"'):page.index('id="defense"')]
    assert "(adaptive attack)" in headline and "not real, the defense hides gradients" in headline
    section = page[page.index('id="defense"'):page.index('id="next"')]
    for text in ("This defense hides gradients; its plain robust accuracy is not real.", "bits:3",
                 "{&#34;bits&#34;: 3}", "90.0%", "40.0%", "+50.0 pts", "Plain: broken", "Adaptive: robust after",
                 "hides gradients"):
        assert text in section, text
    plain_page = render_html(make_outcome())
    assert 'id="defense"' not in plain_page and "(adaptive attack)" not in plain_page


def test_write_reports_adds_defense_json_for_a_defended_scan(tmp_path: Path) -> None:
    outcome = make_defended_outcome()
    paths = write_reports(outcome, tmp_path)
    assert paths["defense"].name == "defense.json"
    assert read_defense_json(paths["defense"]) == outcome.defense
    assert read_json(paths["json"]) == outcome.record  # scan.json stays a plain ScanRecord
    with pytest.raises(InputError, match="not a valid bastion defense-scan record"):
        read_defense_json(paths["json"])


def test_a_plain_scan_removes_an_earlier_defense_record_but_no_other_file(tmp_path: Path) -> None:
    defense = write_reports(make_defended_outcome(), tmp_path)["defense"]
    paths = write_reports(make_outcome(), tmp_path)
    assert "defense" not in paths and not defense.exists()  # it described the scan.json just replaced
    defense.write_text('{"mine": true}')
    write_reports(make_outcome(), tmp_path)
    assert defense.read_text() == '{"mine": true}'


def test_advice_and_explanations_for_a_defended_scan() -> None:
    advice = advise(make_defended_outcome().record)
    hiding = [item for item in advice if item.title.startswith("This defense hides gradients")]
    assert hiding and hiding[0].level == "critical" and "plain 90.0%, adaptive 40.0%" in hiding[0].detail
    unreliable = next(item for item in advice if item.title == "The evaluation may be unreliable")
    assert "defense-hides-gradients" not in unreliable.detail  # the headline is the adaptive pass
    assert "BPDA" in explain_flag(SanityFlag(check="defense-hides-gradients", message=""))
    assert "EOT" in explain_flag(SanityFlag(check="randomised-defense", message="", severity="info"))
    assert "defense.json" in explain_flag(SanityFlag(check="plain-beats-adaptive", message=""))
    context_only = make_record(fail_under=None)
    for result in context_only.results:
        result.flags = [SanityFlag(check="adaptive-evaluation", severity="info", message="defended")]
    assert "The evaluation may be unreliable" not in {item.title for item in advise(context_only)}


def test_a_defense_that_only_fools_gradient_attacks_gets_its_own_verdict() -> None:
    plain, adaptive = make_record(), make_record()
    plain.results[0].attacks[2].skipped = None  # square ran and broke what pgd broke in the adaptive pass
    for sample in plain.results[0].samples:
        sample.broken_by = "square" if sample.broken_by else None
    row = compare_passes(plain.results[0], adaptive.results[0])
    assert row.gap == 0 and not row.plain_not_real and row.hides_gradients
    assert (row.plain_gradient_robust_accuracy, row.adaptive_gradient_robust_accuracy) == (0.9, 0.4)
    flags = gap_flags(row, "bpda")
    assert [flag.check for flag in flags] == ["defense-fools-gradient-attacks"]
    adaptive.results[0].flags = flags
    advice = {item.title: item for item in advise(adaptive)}
    assert advice["This defense hides gradients from gradient attacks"].level == "warning"
    assert "a gradient-only evaluation of this defense would not" in explain_flag(flags[0])
