"""The console's registry, approval and incident pages: over HTTP (roles, the form's token, a refused
approval shown with its reason) and in headless Chromium (a reviewer approves a version, second of two)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bastion.core.ids import file_digest
from bastion.gateway.app import create_app
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.settings import GatewaySettings
from bastion.governance.incidents import link_incident, open_incident
from bastion.governance.registry import open_registry
from bastion.models.loading import load_classifier
from gateway_support import POLICY, SECRET, LiveServer, make_key

FACTORY = "bastion.models.zoo:digits_cnn"


def _scan_record(path: Path, robust: float, weights: str) -> Path:
    """A scan record of ``weights`` (the fields the gates read) with robust accuracy ``robust`` at eps 0.1."""
    path.write_text(json.dumps({"kind": "scan", "created_at": "2026-11-21T00:00:00Z", "config": {"suite": "quick"},
                                "model": {"sha256": file_digest(weights)},
                                "results": [{"eps": 0.1, "clean_accuracy": 0.9, "robust_accuracy": robust}]}))
    return path


def _threat(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "system": {"name": "digits", "exposure": "public", "output": "scores", "modality": "image"},
        "assets": [{"id": "decisions", "description": "answers"}],
        "attackers": [{"id": "anyone", "goal": "flip answers", "capabilities": ["query-access"]}],
        "attack_paths": [{"id": "evasion", "title": "perturbations flip answers", "attacker": "anyone",
                          "assets": ["decisions"], "atlas": ["AML.T0043"], "likelihood": 4, "impact": 3,
                          "requires": [{"evidence": "scan", "metric": "robust_accuracy", "eps": 0.1, "min": 0.5}]}],
    }))
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, digits_weights):
    home = tmp_path_factory.mktemp("governance")
    with open_registry(home) as registry:
        registry.grant("root", "admin", actor="root")
        for approver in ("alice", "bob"):
            registry.grant(approver, "approver", actor="root")
        threat = _threat(home / "threat.yaml")
        for robust in (0.7, 0.2):  # version 1 passes its gate, version 2 fails it
            ref = registry.register("digits", model=FACTORY, weights=Path(digits_weights), threat=threat,
                                    actor="carol").ref
            registry.attach(ref, [_scan_record(home / f"scan-{robust}.json", robust, digits_weights)], actor="carol")
        registry.approve("digits:1", actor="bob")
        incident = open_incident(registry.database, "digits:2", summary="robust accuracy fell", actor="dana")
        link_incident(registry.database, incident.id, "action", "kept version 1 in production", actor="dana")
    settings = GatewaySettings(environment="test", secret_key=SECRET, home=home, model_name="digits",
                               default_rate=None, default_budget=None, key_cache_seconds=0)
    loaded = load_classifier(FACTORY, weights=digits_weights)
    with LiveServer(create_app(settings, loaded=loaded, policy=policy_from_dict(POLICY))) as server:
        server.keys = {name: make_key(home, role="reviewer", name=name)[1] for name in ("alice", "mallory")}
        yield server


def _console(gateway, name: str):
    client = gateway.client()
    client.follow_redirects = False
    client.headers["Cookie"] = f"bastion_key={gateway.keys[name]}"
    return client


def _token(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html.split('id="approve"')[1])
    assert found
    return found.group(1)


def test_pages_show_the_registry_and_incidents(gateway):
    with _console(gateway, "alice") as console:
        registry = console.get("/console/registry")
        assert registry.status_code == 200 and "digits:1" in registry.text and "digits:2" in registry.text
        version = console.get("/console/registry/digits/2")
        assert "fail" in version.text and "robust accuracy" in version.text
        incidents = console.get("/console/incidents")
        assert "robust accuracy fell" in incidents.text and "kept version 1 in production" in incidents.text
        assert console.get("/console/registry/digits/9").status_code == 404
    with gateway.client() as anonymous:
        anonymous.follow_redirects = False
        assert anonymous.get("/console/registry").status_code in (302, 303, 307)


def test_a_refused_approval_says_why_and_a_forged_one_is_rejected(gateway):
    with _console(gateway, "alice") as console:
        page = console.get("/console/registry/digits/2").text
        refused = console.post("/console/registry/digits/2/approve", data={"csrf": _token(page)})
        assert refused.status_code == 422 and "fails 1 of 1 release gate" in refused.text
        forged = console.post("/console/registry/digits/2/approve", data={"csrf": "0" * 64})
        assert forged.status_code == 403
    with _console(gateway, "mallory") as console:  # a reviewer key without a registry role
        page = console.get("/console/registry/digits/2").text
        refused = console.post("/console/registry/digits/2/approve", data={"csrf": _token(page)})
        assert refused.status_code == 422 and "may not approve" in refused.text


def test_a_reviewer_approves_a_version_in_the_browser(browser, gateway):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{gateway.url}/console/login")
        page.fill("#key", gateway.keys["alice"])
        page.click("form.panel button[type=submit]")
        page.click("nav a:text-is('Registry')")
        assert page.url == f"{gateway.url}/console/registry"
        page.click("a:text-is('digits:1')")
        assert page.inner_text("#approvers") == "bob"
        assert "PASS" in page.inner_text("#gates")  # the status badge is upper-cased by the style sheet
        page.fill("#comment", "gate passes, evidence current")
        page.click("#approve button[type=submit]")
        assert page.url == f"{gateway.url}/console/registry/digits/1"
        assert page.inner_text("#status").lower() == "approved"
        assert page.inner_text("#approvers") == "bob, alice"
        assert page.locator("#approve").count() == 0
        page.click("nav a:text-is('Incidents')")
        assert "robust accuracy fell" in page.inner_text("#incidents")
    finally:
        context.close()
