"""Incidents: opened on a registered model, linked to audit-log requests, versions and actions, closed with a
resolution; every step in the ledger, bad links refused with what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app as cli
from bastion.core.errors import InputError
from bastion.gateway.audit import AuditLog, PendingRecord
from bastion.governance.incidents import close_incident, link_incident, list_incidents, open_incident
from bastion.governance.registry import open_registry
from bastion.storage.ledger import entries, verify

FACTORY = "bastion.models.zoo:digits_cnn"


@pytest.fixture()
def home(tmp_path, digits_weights) -> Path:
    with open_registry(tmp_path) as registry:
        registry.register("digits", model=FACTORY, weights=Path(digits_weights), actor="carol")
        log = AuditLog(registry.database)
        log.start()
        log.write([PendingRecord(request_id="req_0123456789abcdef", key_id=None, model="digits", model_version="1",
                                 model_sha256=None, policy_sha256="p" * 64, inputs=None, scores={},
                                 probabilities=None, response={}, decision="answer", status=200)])
        log.close()
    return tmp_path


def test_an_incident_from_open_to_close(home):
    with open_registry(home) as registry:
        database = registry.database
        incident = open_incident(database, "digits:1", summary="answers flipped on blurred inputs", actor="dana")
        link_incident(database, incident.id, "request", "req_0123456789abcdef", actor="dana")
        link_incident(database, incident.id, "version", "digits:1", actor="dana")
        link_incident(database, incident.id, "action", "rolled production back to version 0", actor="dana")
        with pytest.raises(InputError, match="no request"):
            link_incident(database, incident.id, "request", "req_missing", actor="dana")
        with pytest.raises(InputError, match="no version 7"):
            link_incident(database, incident.id, "version", "digits:7", actor="dana")
        closed = close_incident(database, incident.id, resolution="retrained with blur augmentation", actor="erin")
        assert closed.status == "closed" and [link.kind for link in closed.links] == ["request", "version", "action"]
        with pytest.raises(InputError, match="was closed"):
            link_incident(database, incident.id, "action", "too late", actor="dana")
        assert list_incidents(database, status="open") == []
        with database.sessions() as session:
            assert verify(session).ok
            assert [e.action for e in entries(session, subject=f"incident:{incident.id}")] == [
                "incident.open", "incident.link", "incident.link", "incident.link", "incident.close"]
    with pytest.raises(InputError, match="no model 'fraud'"), open_registry(home) as registry:
        open_incident(registry.database, "fraud", summary="x")


def test_links_are_all_or_nothing_and_names_are_read_as_typed(home):
    runner = CliRunner()
    with open_registry(home) as registry:
        incident = open_incident(registry.database, "digits :1", summary="x", actor="dana")
        assert incident.model == "digits" and incident.version == 1
    run = runner.invoke(cli, ["incident", "link", str(incident.id), "--version", "digits:1", "--version", "digits:99",
                              "--home", str(home)])
    assert run.exit_code == 2 and "no version 99" in run.output
    with open_registry(home) as registry:
        assert list_incidents(registry.database, model=" digits")[0].links == []  # not even the first
        with pytest.raises(InputError, match="use open or closed"):
            list_incidents(registry.database, status="bogus")


def test_the_incident_cli(home):
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(cli, ["incident", *args, "--home", str(home)])

    opened = run("open", "digits", "--summary", "extraction alert on key_1", "--as", "dana")
    assert opened.exit_code == 0 and "opened incident 1" in opened.output
    assert run("link", "1", "--request", "req_0123456789abcdef", "--action", "revoked key_1", "--as", "dana"
               ).exit_code == 0
    assert run("link", "1", "--as", "dana").exit_code == 2
    assert "extraction alert" in run("list", "--status", "open").output
    assert run("close", "1", "--resolution", "key revoked, client told", "--as", "erin").exit_code == 0
    shown = run("show", "1")
    assert "resolved by erin" in shown.output and "revoked key_1" in shown.output
    assert run("show", "9").exit_code == 2
