"""The model registry end to end: register with a threat model, attach a real scan, approval refused without
evidence, with failing gates or with one approver; promote and roll back, a running gateway following the
alias; tampered artifacts, signatures and malicious pickles caught; every change in the ledger."""

from __future__ import annotations

import json
import os
import pickle
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from bastion.cli.main import app as cli
from bastion.core.errors import InputError
from bastion.gateway.app import create_app
from bastion.gateway.settings import GatewaySettings
from bastion.governance.registry import ModelRegistry, open_registry
from bastion.storage.ledger import entries, verify
from bastion.storage.tables import ModelArtifactRow
from gateway_support import SECRET, LiveServer, infer_body, make_key

FACTORY = "bastion.models.zoo:digits_cnn"
EPS = 0.05


@pytest.fixture(scope="module")
def scan_json(digits_weights, tmp_path_factory) -> Path:
    """A real scan of the digits model (quick suite, 40 samples)."""
    out = tmp_path_factory.mktemp("scan")
    run = CliRunner().invoke(cli, ["scan", "--model", FACTORY, "--weights", digits_weights, "--data", "digits",
                                   "--eps", str(EPS), "--suite", "quick", "--limit", "40", "--out", str(out)])
    assert run.exit_code == 0, run.output
    return out / "scan.json"


def _robust(scan_json: Path) -> float:
    return json.loads(scan_json.read_text())["results"][0]["robust_accuracy"]


def _threat(path: Path, minimum: float) -> Path:
    document = {
        "system": {"name": "digits-api", "exposure": "public", "output": "scores", "modality": "image"},
        "assets": [{"id": "decisions", "description": "the digits the API reads"}],
        "attackers": [{"id": "prankster", "goal": "flip the digit read", "capabilities": ["query-access"]}],
        "attack_paths": [{"id": "evasion", "title": "small perturbations flip the digit", "attacker": "prankster",
                          "assets": ["decisions"], "atlas": ["AML.T0043"], "likelihood": 4, "impact": 3,
                          "requires": [{"evidence": "scan", "metric": "robust_accuracy", "eps": EPS,
                                        "min": round(minimum, 4)}]}],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture()
def registry(tmp_path) -> ModelRegistry:
    with open_registry(tmp_path) as opened:
        opened.grant("root", "admin", actor="root")
        opened.grant("alice", "approver", actor="root")
        opened.grant("bob", "approver", actor="root")
        yield opened


def _register(registry, tmp_path, digits_weights, minimum: float, *, actor: str = "carol") -> str:
    threat = _threat(tmp_path / f"threat-{minimum}.yaml", minimum)
    info = registry.register("digits", model=FACTORY, weights=Path(digits_weights), threat=threat, actor=actor)
    return info.ref


def test_approval_needs_a_role_evidence_passing_gates_and_two_people(registry, tmp_path, digits_weights, scan_json):
    robust = _robust(scan_json)
    ref = _register(registry, tmp_path, digits_weights, minimum=max(robust - 0.1, 0.0))
    with pytest.raises(InputError, match="may not approve"):
        registry.approve(ref, actor="mallory")  # no role
    with pytest.raises(InputError, match="registered"):
        registry.grant("carol", "approver", actor="root")
        registry.approve(ref, actor="carol")  # the registrant
    with pytest.raises(InputError, match="no evidence"):
        registry.approve(ref, actor="alice")
    registry.attach(ref, [scan_json], actor="carol")
    assert [g["status"] for g in registry.gates(ref)] == ["pass"]
    with pytest.raises(InputError, match="not approved"):
        registry.promote(ref, actor="root")
    first = registry.approve(ref, comment="robust enough", actor="alice")
    assert not first.approved and first.approvers == ["alice"]
    with pytest.raises(InputError, match="already"):
        registry.approve(ref, actor="alice")
    with pytest.raises(InputError, match="not approved"):
        registry.promote(ref, actor="root")  # one approver is not enough
    assert registry.approve(ref, actor="bob").approved
    assert registry.promote(ref, actor="root").aliases == ["production"]
    assert registry.version("digits:production").number == 1

    failing = _register(registry, tmp_path, digits_weights, minimum=min(robust + 0.2, 1.0))
    registry.attach(failing, [scan_json], actor="carol")
    with pytest.raises(InputError, match="fails 1 of 1 release gate"):
        registry.approve(failing, actor="alice")
    with open_registry(tmp_path) as again, again.database.sessions() as session:
        assert verify(session).ok
        actions = [e.action for e in entries(session)]
    assert {"registry.register", "registry.attach", "registry.approve", "registry.promote"} <= set(actions)


def test_gates_without_a_threat_model_or_with_missing_evidence(registry, tmp_path, digits_weights):
    bare = registry.register("plain", model=FACTORY, weights=Path(digits_weights), actor="carol").ref
    with pytest.raises(InputError, match="no threat model"):
        registry.approve(bare, actor="alice")
    ref = _register(registry, tmp_path, digits_weights, minimum=0.1)
    audit = tmp_path / "other.json"
    audit.write_text(json.dumps({"kind": "drift", "created_at": "2026-11-21T00:00:00Z"}))
    registry.attach(ref, [audit], actor="carol")
    assert [g["status"] for g in registry.gates(ref)] == ["missing"]
    with pytest.raises(InputError, match="missing"):
        registry.approve(ref, actor="alice")
    not_evidence = tmp_path / "plain.json"
    not_evidence.write_text("{}")
    with pytest.raises(InputError, match="no 'kind'"):
        registry.attach(ref, [not_evidence], actor="carol")


def _approved_and_promoted(registry, tmp_path, digits_weights, scan_json) -> str:
    ref = _register(registry, tmp_path, digits_weights, minimum=0.0)
    registry.attach(ref, [scan_json], actor="carol")
    registry.approve(ref, actor="alice")
    registry.approve(ref, actor="bob")
    registry.promote(ref, actor="root")
    return ref


def test_rollback_switches_the_version_a_running_gateway_serves(registry, tmp_path, digits_weights, scan_json,
                                                                digits_arrays):
    _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=tmp_path, registry="digits:production",
                               registry_poll_seconds=0.1, default_rate=None, default_budget=None,
                               key_cache_seconds=0)
    x, _ = digits_arrays
    with LiveServer(create_app(settings)) as server:
        _, key = make_key(tmp_path)
        with server.client(key) as client:
            def served() -> str:
                return client.get("/v2/models/digits").json()["versions"][0]

            def wait_for(version: str) -> None:
                deadline = time.monotonic() + 30
                while served() != version and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert served() == version

            assert served() == "1"
            _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
            wait_for("2")
            answer = client.post("/v2/models/digits/infer", json=infer_body(x[:1]))
            assert answer.json()["model_version"] == "2"
            registry.rollback("digits", actor="root")
            wait_for("1")
            assert client.post("/v2/models/digits/infer", json=infer_body(x[:1])).json()["model_version"] == "1"
    with pytest.raises(InputError, match="no earlier version"):
        registry.rollback("digits", actor="root")


def test_tampered_artifacts_and_signatures_are_detected(registry, tmp_path, digits_weights):
    keys = tmp_path / "release.key"
    assert CliRunner().invoke(cli, ["data", "keygen", "--out", str(keys)]).exit_code == 0
    info = registry.register("digits", model=FACTORY, weights=Path(digits_weights), sign_key=keys, actor="carol")
    assert info.artifacts[0].signed_by and registry.verify(info.ref) == []
    with registry.database.transaction() as session:  # a forged signature
        row = session.query(ModelArtifactRow).one()
        session.execute(update(ModelArtifactRow).where(ModelArtifactRow.id == row.id).values(
            signature={**row.signature, "signature": "00" * 64}))
    assert any("signature" in problem for problem in registry.verify(info.ref))
    stored = registry.objects.path(info.artifacts[0].sha256)
    os.chmod(stored, 0o644)
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")  # a changed weights file
    assert any("weights" in problem for problem in registry.verify(info.ref))
    with pytest.raises(InputError, match="will not load"):
        registry.load(info.ref)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_malicious_pickle_is_refused(registry, tmp_path):
    evil = tmp_path / "weights.pt"
    evil.write_bytes(pickle.dumps(_Payload()))  # written, never loaded
    with pytest.raises(InputError, match="failed the artifact scan"):
        registry.register("digits", model=FACTORY, weights=evil, actor="carol")
    assert registry.models() == []


def test_the_cli_walks_the_whole_release(tmp_path, digits_weights, scan_json):
    runner = CliRunner()

    def run(*args: str, actor: str | None = "root") -> object:
        who = [] if actor is None else ["--as", actor]
        return runner.invoke(cli, ["registry", *args, "--home", str(tmp_path), *who])

    assert run("grant", "root", "admin").exit_code == 0
    assert run("grant", "alice", "approver").exit_code == 0
    assert run("grant", "bob", "approver").exit_code == 0
    assert run("grant", "eve", "admin", actor="eve").exit_code == 2  # only an admin grants once there is one
    threat = _threat(tmp_path / "threat.yaml", 0.0)
    registered = run("register", "--name", "digits", "--model", FACTORY, "--weights", digits_weights, "--threat",
                     str(threat), actor="carol")
    assert registered.exit_code == 0 and "registered digits:1" in registered.output
    assert run("approve", "digits:1", actor="alice").exit_code == 2
    assert run("gates", "digits:1", actor=None).exit_code == 1
    assert run("attach", "digits:1", str(scan_json), actor="carol").exit_code == 0
    assert run("gates", "digits:1", actor=None).exit_code == 0
    assert "1 of 2" in run("approve", "digits:1", actor="alice").output
    assert "approved" in run("approve", "digits:1", actor="bob").output
    assert "production -> version 1" in run("promote", "digits:1").output
    shown = run("show", "digits:production", "--json", actor=None)
    assert json.loads(shown.output)["aliases"] == ["production"]
    assert run("verify", "digits:1", actor=None).exit_code == 0
    assert run("rollback", "digits").exit_code == 2
    assert "no model 'nothing'" in run("show", "nothing:1", actor=None).output


def test_model_cards_render_from_the_registry(registry, tmp_path, digits_weights, scan_json):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from bastion.governance.card import model_card, render_card

    ref = _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
    card = model_card(registry, ref)
    markdown = render_card(card, "md")
    robust = _robust(scan_json)
    assert "# Model card: digits:1" in markdown and "serving as production" in markdown
    assert f"robust accuracy {robust:.1%} at eps {EPS}" in markdown and "alice, bob" in markdown
    assert "AML.T0043" in markdown and "| pass |" in markdown
    html = render_card(card, "html")
    assert html.startswith("<!DOCTYPE html>") and "small perturbations flip the digit" in html
    bom = render_card(card, "cyclonedx")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom) is None
    document = json.loads(bom)
    model = document["components"][0]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"][0]["content"] == registry.version(ref).artifacts[0].sha256
    out = tmp_path / "card.html"
    run = CliRunner().invoke(cli, ["registry", "card", ref, "--format", "html", "--out", str(out), "--home",
                                   str(tmp_path)])
    assert run.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")
    assert CliRunner().invoke(cli, ["registry", "card", ref, "--format", "pdf", "--home", str(tmp_path)]).exit_code == 2


def test_a_rewritten_registry_ledger_entry_is_detected(registry, tmp_path, digits_weights, scan_json):
    import sqlite3

    _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
    with sqlite3.connect(tmp_path / "bastion.db") as connection:  # someone pretends carol approved too
        connection.execute("UPDATE ledger_entries SET actor = 'carol' WHERE action = 'registry.approve' AND "
                           "actor = 'bob'")
    with open_registry(tmp_path) as again, again.database.sessions() as session:
        check = verify(session)
    assert not check.ok
    run = CliRunner().invoke(cli, ["data", "ledger", "--verify", "--home", str(tmp_path)])
    assert run.exit_code == 1


def test_the_mistakes_a_new_user_makes_are_refused_with_what_to_do(tmp_path, digits_weights, scan_json):
    with open_registry(tmp_path) as registry:
        with pytest.raises(InputError, match="first grant must make one"):
            registry.grant("alice", "approver", actor="root")
        registry.grant("root", "admin", actor="root")
        registry.grant("alice", "approver", actor="root")
        with pytest.raises(InputError, match="does not load"):
            registry.register("digits", model="bastion.models.zoo:digits_cn", weights=Path(digits_weights),
                              actor="carol")
        other = tmp_path / "other.safetensors"
        other.write_bytes(Path(digits_weights).read_bytes())
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(other))
        first = next(iter(tensors))
        tensors[first] = tensors[first] + 1.0
        save_file(tensors, str(other))
        ref = registry.register("digits", model=FACTORY, weights=other, actor="carol").ref
        with pytest.raises(InputError, match="tested the model file"):
            registry.attach(ref, [scan_json], actor="carol")  # the scan tested the other weights
        with pytest.raises(InputError, match="is a folder"):
            registry.attach(ref, [scan_json.parent], actor="carol")
        with pytest.raises(InputError, match="may not promote"):
            registry.promote(ref, actor="mallory")
        with pytest.raises(InputError, match="may not roll back"):
            registry.rollback("digits:production", actor="mallory")
    run = CliRunner().invoke(cli, ["serve", "--registry", "digits", "--home", str(tmp_path)])
    assert run.exit_code == 2 and "--registry: 'digits'" in run.output and "NAME:ALIAS" in run.output
    assert "BASTION_REGISTRY" not in run.output  # the user typed the option, not the variable


def _copy_json(source: Path, target: Path, change) -> Path:
    """``source``'s record with ``change(record)`` applied, written to ``target``."""
    record = json.loads(source.read_text())
    change(record)
    target.write_text(json.dumps(record))
    return target


def test_evidence_that_does_not_name_this_versions_weights_is_refused(registry, tmp_path, digits_weights,
                                                                       scan_json):
    ref = _register(registry, tmp_path, digits_weights, minimum=0.0)
    nameless = _copy_json(scan_json, tmp_path / "nameless.json", lambda r: r["model"].update(sha256=None))
    modelless = _copy_json(scan_json, tmp_path / "modelless.json", lambda r: r.pop("model"))
    for record in (nameless, modelless):
        with pytest.raises(InputError, match="does not name the model it tested"):
            registry.attach(ref, [record], actor="carol")
    unweighted = registry.register("random", model=FACTORY, threat=tmp_path / "threat-0.0.yaml", actor="carol").ref
    with pytest.raises(InputError, match="registered as a factory without --weights"):
        registry.attach(unweighted, [scan_json], actor="carol")
    future = _copy_json(scan_json, tmp_path / "future.json", lambda r: r.update(created_at="2999-01-01T00:00:00Z"))
    with pytest.raises(InputError, match="in the future"):
        registry.attach(ref, [future], actor="carol")
    assert registry.version(ref).evidence == []


def test_promotion_rechecks_the_gates_on_evidence_attached_after_approval(registry, tmp_path, digits_weights,
                                                                          scan_json):
    robust = _robust(scan_json)
    ref = _register(registry, tmp_path, digits_weights, minimum=robust)
    registry.attach(ref, [scan_json], actor="carol")
    registry.approve(ref, actor="alice")
    assert registry.approve(ref, actor="bob").approved
    now = datetime.now(timezone.utc).isoformat()
    worse = _copy_json(scan_json, tmp_path / "worse.json", lambda r: (
        r["results"][0].update(robust_accuracy=robust - 0.05), r.update(created_at=now)))
    registry.attach(ref, [worse], actor="carol")
    with pytest.raises(InputError, match="evidence attached since then changed that"):
        registry.promote(ref, actor="root")
    assert registry.version(ref).aliases == []


def test_a_threat_model_without_gates_cannot_approve(registry, tmp_path, digits_weights, scan_json):
    document = yaml.safe_load(_threat(tmp_path / "t.yaml", 0.0).read_text())
    del document["attack_paths"][0]["requires"]
    (tmp_path / "nogates.yaml").write_text(yaml.safe_dump(document))
    ref = registry.register("digits", model=FACTORY, weights=Path(digits_weights), threat=tmp_path / "nogates.yaml",
                            actor="carol").ref
    registry.attach(ref, [scan_json], actor="carol")
    with pytest.raises(InputError, match="has no release gates"):
        registry.approve(ref, actor="alice")
    run = CliRunner().invoke(cli, ["registry", "gates", ref, "--home", str(tmp_path)])
    assert run.exit_code == 1 and "its threat model has no `requires:`" in run.output


def test_names_roles_and_aliases_as_people_type_them(registry, tmp_path, digits_weights, scan_json):
    ref = _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
    with pytest.raises(InputError, match="version 1 already"):
        registry.promote(ref, actor="root")  # twice would stack it, and a rollback would then do nothing
    with pytest.raises(InputError, match="alias '   '"):
        registry.promote(ref, alias="   ", actor="root")
    with pytest.raises(InputError, match="no version"):
        registry.version("digits:²")  # a digit int() does not read
    registry.grant(" Carol ", "approver", actor="root")
    second = _register(registry, tmp_path, digits_weights, minimum=0.0)
    registry.attach(second, [scan_json], actor="carol")
    with pytest.raises(InputError, match="registered digits:2 and may not approve it"):
        registry.approve(second, actor="Carol")
    registry.approve(second, actor="alice")
    with pytest.raises(InputError, match="ALICE approved digits:2 already"):
        registry.approve(second, actor="ALICE")  # the same person, whatever the case
    with pytest.raises(InputError, match="only admin"):
        registry.grant("root", "approver", actor="root")
    objects = sorted((tmp_path / "objects").rglob("*"))
    with pytest.raises(InputError, match="model name 'a:b'"):
        registry.register("a:b", model=FACTORY, weights=Path(digits_weights), actor="carol")
    assert sorted((tmp_path / "objects").rglob("*")) == objects  # nothing stored for a refused name
    assert registry.register(" digits", model=FACTORY, weights=Path(digits_weights), actor="carol").ref == "digits:3"


def test_the_cli_rolls_back_the_alias_it_names(tmp_path, digits_weights, scan_json):
    with open_registry(tmp_path) as registry:
        registry.grant("root", "admin", actor="root")
        for approver in ("alice", "bob"):
            registry.grant(approver, "approver", actor="root")
        for _ in range(2):
            ref = _register(registry, tmp_path, digits_weights, minimum=0.0)
            registry.attach(ref, [scan_json], actor="carol")
            registry.approve(ref, actor="alice")
            registry.approve(ref, actor="bob")
            registry.promote(ref, alias="canary", actor="root")
    run = CliRunner().invoke(cli, ["registry", "rollback", "digits:canary", "--as", "root", "--home", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "digits:canary rolled back to version 1" in run.output
    listed = CliRunner().invoke(cli, ["data", "ledger", "--subject", "model:digits", "--home", str(tmp_path)])
    assert "registry.rollback" in listed.output and "alias=canary from=2 to=1" in " ".join(listed.output.split())
    card = CliRunner().invoke(cli, ["registry", "card", "digits:1", "--out", str(tmp_path / "missing" / "c.md"),
                                    "--home", str(tmp_path)])
    assert card.exit_code == 2 and "cannot write the card" in card.output


def test_audit_evidence_must_be_of_the_data_the_version_names(registry, tmp_path, digits_weights):
    from PIL import Image

    from bastion.data.manifest import build_manifest, write_manifest

    folders = {}
    for name, offset in (("train", 0), ("other", 40)):
        root = tmp_path / name
        for i in range(30):
            (root / str(i % 3)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), (i + offset) * 3, dtype=np.uint8)).save(root / str(i % 3) / f"{i}.png")
        folders[name] = root
    manifest = tmp_path / "train.manifest.json"
    write_manifest(build_manifest(folders["train"]), manifest)
    broken = tmp_path / "broken.manifest.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="broken.manifest.json"):
        registry.register("digits", model=FACTORY, weights=Path(digits_weights), data_manifest=broken, actor="carol")
    ref = registry.register("digits", model=FACTORY, weights=Path(digits_weights), data_manifest=manifest,
                            threat=_threat(tmp_path / "t.yaml", 0.0), actor="carol").ref
    audits = {}
    for name, root in folders.items():
        run = CliRunner().invoke(cli, ["data", "audit", str(root), "--checks", "duplicates",
                                       "--out", str(tmp_path / f"audit-{name}")])
        assert run.exit_code == 0, run.output
        audits[name] = tmp_path / f"audit-{name}" / "audit.json"
    with pytest.raises(InputError, match="audit the training data the version was registered with"):
        registry.attach(ref, [audits["other"]], actor="carol")
    assert registry.attach(ref, [audits["train"]], actor="carol").evidence[0].kind == "audit"


def test_serve_refuses_a_version_that_was_not_released(registry, tmp_path, digits_weights):
    from pydantic import ValidationError

    from bastion.storage.tables import AliasMoveRow

    ref = _register(registry, tmp_path, digits_weights, minimum=0.0)  # registered: no evidence, no approval

    def serve(target: str) -> object:
        return CliRunner().invoke(cli, ["serve", "--registry", target, "--home", str(tmp_path)])

    for target in (ref, "digits:v1"):
        run = serve(target)
        assert run.exit_code == 2, run.output
        assert "names version 1, not an alias" in run.output and "bastion registry approve digits:1" in run.output
        assert "bastion registry promote digits:1 --to production" in run.output
        assert len(run.output.strip().splitlines()) == 1
    run = serve("digits:production")
    assert run.exit_code == 2 and "digits:production is not set" in run.output and "promote" in run.output
    with pytest.raises(ValidationError, match="names version 1"):
        GatewaySettings(registry=ref)
    with registry.database.transaction() as session:  # an alias on a version nobody approved (a written database)
        model_id = session.query(AliasMoveRow.model_id).first() or (1,)
        session.add(AliasMoveRow(model_id=model_id[0], alias="staging", version_number=1, action="promote",
                                 moved_at=datetime.now(timezone.utc), moved_by="mallory"))
    with pytest.raises(InputError, match="points to version 1, which is registered, not approved"):
        registry.released("digits:staging")


def test_roles_belong_to_the_person_whatever_the_case(registry, tmp_path, digits_weights, scan_json):
    from bastion.storage.tables import RegistryRoleRow

    ref = _register(registry, tmp_path, digits_weights, minimum=0.0)
    registry.attach(ref, [scan_json], actor="carol")
    assert registry.approve(ref, actor="ALICE").approvers == ["ALICE"]  # granted as alice
    registry.grant("Dave", "approver", actor="ROOT")  # root is the admin
    registry.grant("dave", "admin", actor="Root")
    with registry.database.sessions() as session:
        assert [(r.actor, r.role) for r in session.query(RegistryRoleRow).filter(
            RegistryRoleRow.actor.in_(["Dave", "dave"]))] == [("Dave", "admin")]
    registry.grant("dave", "approver", actor="root")
    with pytest.raises(InputError, match="only admin"):
        registry.grant("ROOT", "approver", actor="root")  # still the last admin, however it is spelt
    with registry.database.transaction() as session:  # rows stored before names were folded
        session.add(RegistryRoleRow(actor="Erin", role="approver", granted_at=datetime.now(timezone.utc),
                                    granted_by="root"))
        session.add(RegistryRoleRow(actor="ERIN", role="admin", granted_at=datetime.now(timezone.utc),
                                    granted_by="root"))
    assert registry.approve(ref, actor="erin").approved
    registry.grant("erin", "approver", actor="root")  # updates both rows: one person, one role
    with registry.database.sessions() as session:
        assert {r.role for r in session.query(RegistryRoleRow).filter(RegistryRoleRow.actor.in_(["Erin", "ERIN"]))} \
            == {"approver"}
    with pytest.raises(InputError, match="erin is not a registry admin"):
        registry.grant("frank", "approver", actor="erin")


def test_the_same_evidence_is_attached_once(registry, tmp_path, digits_weights, scan_json):
    ref = _register(registry, tmp_path, digits_weights, minimum=0.0)
    copy = tmp_path / "copy.json"
    copy.write_bytes(scan_json.read_bytes())
    with pytest.raises(InputError, match="are the same record"):
        registry.attach(ref, [scan_json, copy], actor="carol")
    registry.attach(ref, [scan_json], actor="carol")
    with pytest.raises(InputError, match="copy.json is already attached to digits:1"):
        registry.attach(ref, [copy], actor="carol")
    run = CliRunner().invoke(cli, ["registry", "attach", ref, str(scan_json), "--home", str(tmp_path), "--as", "carol"])
    assert run.exit_code == 2 and "already attached" in run.output
    assert len(registry.version(ref).evidence) == 1


def test_model_names_must_be_safe_in_a_url_path(registry, digits_weights):
    for name in ("a/b", "a b", "../x", "é", "%2F", ".hidden"):
        with pytest.raises(InputError, match="letters, digits, '.', '_' and '-'"):
            registry.register(name, model=FACTORY, weights=Path(digits_weights), actor="carol")
    assert registry.models() == []
    assert registry.register("Fraud_cnn.v2-b", model=FACTORY, weights=Path(digits_weights), actor="carol").number == 1


def test_list_keeps_status_aliases_and_dates_whole_in_a_narrow_terminal(registry, tmp_path, digits_weights,
                                                                         scan_json, monkeypatch):
    from rich.console import Console

    ref = _approved_and_promoted(registry, tmp_path, digits_weights, scan_json)
    registry.promote(ref, alias="staging", actor="root")
    registry.attach(_register(registry, tmp_path, digits_weights, minimum=0.0), [scan_json], actor="carol")
    monkeypatch.setattr("bastion.cli.registry.console", Console(width=80))  # COLUMNS=80
    run = CliRunner().invoke(cli, ["registry", "list", "digits", "--home", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "…" not in run.output and max(len(line) for line in run.output.splitlines()) <= 80
    for whole in ("registered", "approved", "production", "staging",
                  f"{registry.version(ref).created_at:%Y-%m-%d %H:%M}"):
        assert whole in run.output
