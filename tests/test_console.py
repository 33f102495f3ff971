"""The reviewers' web console: login and the session cookie, redirects, CSRF tokens, escaping, the case page and
the decision form, the drift page; through httpx on a live gateway, and end to end in headless Chromium."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from bastion.gateway.app import create_app
from bastion.gateway.console import input_image
from bastion.gateway.policy import policy_from_dict
from bastion.gateway.settings import GatewaySettings
from bastion.models.loading import load_classifier
from gateway_support import POLICY, SECRET, LiveServer, infer_body, make_key, uncertain_input

INFER = "/v2/models/digits/infer"


def _settings(home) -> GatewaySettings:
    return GatewaySettings(environment="test", secret_key=SECRET, home=home, model_name="digits",
                           default_rate=None, default_budget=None, key_cache_seconds=0)


@pytest.fixture(scope="module")
def loaded(digits_weights):
    return load_classifier("bastion.models.zoo:digits_cnn", weights=digits_weights)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, loaded):
    home = tmp_path_factory.mktemp("console")
    app = create_app(_settings(home), loaded=loaded, policy=policy_from_dict(POLICY))
    with LiveServer(app) as server:
        server.home = home
        server.keys = {role: make_key(home, role=role)[1] for role in ("client", "reviewer", "admin")}
        yield server


def _console(gateway, key: str | None = None):
    """An httpx client of the console, logged in with ``key`` (its session cookie) when given."""
    client = gateway.client()
    client.follow_redirects = False
    if key is not None:
        client.headers["Cookie"] = f"bastion_key={key}"
    return client


def _escalate(gateway, loaded, digits_arrays, *, client_id: str | None = None) -> str:
    """Send the client key's uncertain input; the review id of its 202."""
    body = {**infer_body(uncertain_input(loaded, digits_arrays)), "id": client_id}
    with gateway.client(gateway.keys["client"]) as client:
        answer = client.post(INFER, json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["review_id"]


def _token(html: str, action: str) -> str:
    """The CSRF token of the form posting to ``action`` on a page."""
    found = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf" value="([0-9a-f]+)"',
                      html)
    assert found, f"no form for {action}"
    return found.group(1)


def _client_sees(gateway, review_id: str) -> dict:
    with gateway.client(gateway.keys["client"]) as client:
        return client.get(f"/v2/reviews/{review_id}").json()


# --- plain HTTP ---------------------------------------------------------------------------------------------


def test_pages_without_a_session_redirect_to_login(gateway):
    forged = "bst_" + "x" * 43
    for key in (None, forged):
        with _console(gateway, key) as client:
            for path in ("/console", "/console/monitor", "/console/reviews/rev_0000000000000000"):
                answer = client.get(path)
                assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path
            posted = client.post("/console/reviews/rev_0000000000000000/decision", data={"csrf": "x"})
            assert posted.status_code == 303 and posted.headers["location"] == "/console/login"
    with _console(gateway) as client:
        login = client.get("/console/login")
    assert login.status_code == 200 and 'name="key"' in login.text
    assert "default-src 'none'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY" and login.headers["cache-control"] == "no-store"


def test_login_sets_a_strict_http_only_cookie_for_reviewers_only(gateway):
    with _console(gateway) as client:
        refused = client.post("/console/login", data={"key": gateway.keys["client"]})
        assert refused.status_code == 403 and "client key" in refused.text
        assert "set-cookie" not in refused.headers
        wrong = client.post("/console/login", data={"key": "bst_" + "y" * 43})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        missing = client.post("/console/login", data={})
        assert missing.status_code == 422 and "key" in missing.text
        answer = client.post("/console/login", data={"key": gateway.keys["reviewer"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"bastion_key={gateway.keys['reviewer']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    with _console(gateway, gateway.keys["client"]) as client:  # a client key in the cookie gets no further
        answer = client.get("/console")
        assert answer.status_code == 403 and "reviewer or admin" in answer.text
    with _console(gateway, gateway.keys["admin"]) as client:
        queue = client.get("/console")
        assert queue.status_code == 200 and "Review queue" in queue.text
        assert client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
        out = client.post("/console/logout", data={"csrf": _token(queue.text, "/console/logout")})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert out.headers["set-cookie"].startswith('bastion_key="";') and "Max-Age=0" in out.headers["set-cookie"]


def test_deciding_through_the_form_needs_the_token_and_reaches_the_client(gateway, loaded, digits_arrays):
    review_id = _escalate(gateway, loaded, digits_arrays)
    page = f"/console/reviews/{review_id}"
    action = f"{page}/decision"
    with _console(gateway, gateway.keys["admin"]) as admin:
        admin_token = _token(admin.get(page).text, action)
    with _console(gateway, gateway.keys["reviewer"]) as client:
        assert review_id in client.get("/console").text
        case = client.get(page)
        assert case.status_code == 200
        assert "data:image/png;base64," in case.text and "energy" in case.text and "squeeze" in case.text
        token = _token(case.text, action)
        for wrong in ("0" * 64, admin_token, _token(case.text, "/console/logout")):
            refused = client.post(action, data={"csrf": wrong, "action": "approve"})
            assert refused.status_code == 403 and "security token" in refused.text
        assert _client_sees(gateway, review_id)["status"] == "pending"
        no_label = client.post(action, data={"csrf": token, "action": "relabel", "labels": [""]})
        assert no_label.status_code == 422 and "a class for every instance" in no_label.text
        bad_label = client.post(action, data={"csrf": token, "action": "relabel", "labels": ["42"]})
        assert bad_label.status_code == 422 and "0..9" in bad_label.text
        done = client.post(action, data={"csrf": token, "action": "relabel", "labels": ["3"], "note": "a blurred 3"})
        assert done.status_code == 303 and done.headers["location"] == page
        shown = client.get(page).text
        assert 'id="case-status">answered<' in shown and 'id="labels">3<' in shown and "a blurred 3" in shown
        again = client.post(action, data={"csrf": token, "action": "approve"})
        assert again.status_code == 422 and "already decided" in again.text
        assert review_id in client.get("/console?status=answered").text
        assert review_id not in client.get("/console").text
        assert client.get("/console/reviews/rev_0000000000000000").status_code == 404
    result = _client_sees(gateway, review_id)
    assert result["status"] == "answered" and result["outputs"][0]["data"] == [3]
    assert result["decided_by"].startswith("reviewer-key (key_")


def test_everything_from_a_request_is_escaped(gateway, loaded, digits_arrays):
    _, key = make_key(gateway.home, role="reviewer", name="<script>alert('name')</script>")
    review_id = _escalate(gateway, loaded, digits_arrays, client_id='<img src=x onerror="alert(1)">')
    page = f"/console/reviews/{review_id}"
    with _console(gateway, key) as client:
        case = client.get(page).text
        assert "<script>alert" not in case and "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in case
        assert "<img src=x" not in case and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in case
        note = "<b onclick='steal()'>bold</b>"
        client.post(f"{page}/decision", data={"csrf": _token(case, f"{page}/decision"), "action": "approve",
                                               "note": note})
        decided = client.get(page).text
        assert note not in decided and "&lt;b onclick=&#39;steal()&#39;&gt;bold&lt;/b&gt;" in decided
        status = client.get("/console", params={"status": "<script>x</script>"})
        assert status.status_code == 422
        assert "<script>x" not in status.text and "&lt;script&gt;x&lt;/script&gt;" in status.text


def test_monitor_reports_drift_of_the_logged_traffic(tmp_path, loaded, digits_arrays):
    x, _ = digits_arrays
    app = create_app(_settings(tmp_path), loaded=loaded, policy=policy_from_dict({**POLICY, "detectors": []}))
    with LiveServer(app) as server:
        _, reviewer = make_key(tmp_path, role="reviewer")
        _, client_key = make_key(tmp_path)
        with _console(server, reviewer) as console:
            empty = console.get("/console/monitor")
            assert empty.status_code == 200 and "No drift report yet" in empty.text and "at least 2" in empty.text
            with server.client(client_key) as client:
                for start in range(1300, 1400, 25):
                    assert client.post(INFER, json=infer_body(x[start:start + 25])).status_code in (200, 202)
            page = console.get("/console/monitor")
    assert page.status_code == 200 and 'id="verdict"' in page.text
    assert page.text.count('<img src="data:image/png;base64,') == 3
    assert "50 instances" in page.text and "Kolmogorov" in page.text


def test_input_image_draws_image_shaped_inputs_only():
    from PIL import Image

    sample = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    uri = input_image(sample, low=0.0, high=1.0)
    image = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/png;base64,"))))
    assert image.size == (160, 160) and image.mode == "L"
    assert image.getpixel((0, 0)) == 0 and image.getpixel((159, 159)) == 255
    assert input_image(np.zeros((3, 4, 4)), low=0.0, high=1.0) is not None
    for shape in ((64,), (2, 8, 8), (1, 1, 64)):
        assert input_image(np.zeros(shape), low=0.0, high=1.0) is None


# --- headless Chromium ------------------------------------------------------------------------------------


def test_a_reviewer_relabels_a_case_in_the_browser(browser, gateway, loaded, digits_arrays):
    review_id = _escalate(gateway, loaded, digits_arrays)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{gateway.url}/console")
        assert page.url == f"{gateway.url}/console/login"
        page.fill("#key", gateway.keys["client"])
        page.click("form.panel button[type=submit]")
        assert "client key" in page.inner_text("#error")
        assert context.cookies() == []

        page.fill("#key", gateway.keys["reviewer"])
        page.click("form.panel button[type=submit]")
        assert page.url == f"{gateway.url}/console"
        cookie, = context.cookies()
        assert cookie["name"] == "bastion_key" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        page.click(f"a:text-is('{review_id}')")
        assert page.url == f"{gateway.url}/console/reviews/{review_id}"
        assert page.eval_on_selector("img.input", "img => [img.complete, img.naturalWidth]") == [True, 160]
        assert "energy" in page.inner_text("table.scores") and "squeeze" in page.inner_text("table.scores")
        assert page.locator("ol.bars li").count() == 10

        forged = page.request.post(f"{gateway.url}/console/reviews/{review_id}/decision",
                                   form={"csrf": "0" * 64, "action": "approve"}, max_redirects=0)
        assert forged.status == 403

        page.check("input[name=action][value=relabel]")
        page.select_option("#label-0", "7")
        page.fill("#note", "looks like a 7")
        page.click("#decide button[type=submit]")
        assert page.url == f"{gateway.url}/console/reviews/{review_id}"
        assert page.inner_text("#case-status") == "ANSWERED"  # text-transform: uppercase
        assert page.inner_text("#labels") == "7"

        page.goto(f"{gateway.url}/console/monitor")
        assert "Drift of" in page.inner_text("h1")

        page.click("nav button[type=submit]")  # log out
        assert page.url == f"{gateway.url}/console/login" and context.cookies() == []
        page.goto(f"{gateway.url}/console")
        assert page.url == f"{gateway.url}/console/login"
    finally:
        context.close()
    result = _client_sees(gateway, review_id)
    assert result["status"] == "answered" and result["outputs"][0]["data"] == [7]
