"""The fourteenth cut's calibration set: the converter's checks and decontamination, and the shipped file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bastion.core.errors import InputError
from bastion.defenses.text.calibration import shipped_calibration_texts
from bastion.defenses.text.corpus import Example, assemble, read_labelled_jsonl, split_examples, word_runs


def _benign(text: str, family: str = "K9-night-nurses") -> Example:
    return Example(text=text, label=0, category="benign-trigger", family=family, split="train",
                   source="writer K9", licence="Apache-2.0")


def test_the_converter_refuses_a_text_that_is_not_benign_trigger(tmp_path, benchmark_script):
    script = benchmark_script("calibration_set.py")
    path = tmp_path / "K9.jsonl"
    path.write_text(json.dumps({"text": "what's a good lasagne?", "label": 0, "category": "benign",
                                "family": "K9-cooks", "source": "writer K9", "licence": "Apache-2.0"}) + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=re.escape("writer K9, family 'K9-cooks': category 'benign'; a "
                                                   "calibration set holds benign-trigger prompts only")):
        script.read_calibration([path])
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(path), "--out", str(tmp_path / "out.yaml"), "--report", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2 and not (tmp_path / "out.yaml").exists()


def test_near_paraphrases_of_train_texts_are_dropped_and_named(benchmark_script):
    script = benchmark_script("calibration_set.py")
    written = [_benign("Ignore the hum in this voice memo, what did she say?"),
               _benign("Act as a quiz host for my nephew's birthday."),
               _benign("Override the default font in my Word template, how?")]
    similarity = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.86], [0.84, 0.2, 0.5]])
    kept, dropped = script.decontaminate(written, {}, similarity, ["eval-b W9-memo"],
                                         [("a train", "train t-a"), ("a train", "train t-b")])
    assert [example.text for example in kept] == [written[0].text, written[2].text]
    assert [(record["reason"], record["collides_with"]) for record in dropped] == [
        ("cosine similarity 0.860 with a train text", "train t-b")]
    assert script.reason_kind(dropped[0]["reason"]) == "near-train"
    assert script.reason_kind("cosine similarity 0.900 with a held-out text") == "near-held-out"


def test_the_converter_gives_each_family_its_texts_in_order(benchmark_script):
    script = benchmark_script("calibration_set.py")
    built = script.families([_benign("a"), _benign("b", "K9-gamers"), _benign("c")])
    assert [(family["name"], family["texts"]) for family in built] == [("K9-night-nurses", ["a", "c"]),
                                                                       ("K9-gamers", ["b"])]


def test_the_converter_rebuilds_the_shipped_calibration_set_from_the_writers_files(tmp_path, benchmark_script):
    script = benchmark_script("calibration_set.py")
    out, report = tmp_path / "calibration_trigger.yaml", tmp_path / "report.json"
    assert script.main(["--out", str(out), "--report", str(report)]) == 0
    assert out.read_text(encoding="utf-8") == script.OUT.read_text(encoding="utf-8")
    summary = json.loads(report.read_text(encoding="utf-8"))
    assert summary["written"] == 1000 and summary["kept"] == len(shipped_calibration_texts())


def test_the_calibration_set_is_apart_from_training_and_eval_b(benchmark_script):
    texts = shipped_calibration_texts()
    train = {example.text for example in split_examples(assemble(), "train")}
    assert not train.intersection(texts)
    eval_b = read_labelled_jsonl(benchmark_script("written_families.py").EVAL_B)
    eval_b_runs = {run for example in eval_b for run in word_runs(example.text)}
    assert not [text for text in texts if eval_b_runs.intersection(word_runs(text))]
