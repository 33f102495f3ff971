"""The output guard: leaked keys, personal data and system prompts are found and redacted; ordinary replies are not.

Key-like test values are assembled from pieces so that no secret scanner mistakes this file for a leak.
"""

from __future__ import annotations

import base64
import json

import pytest

from bastion.core.errors import InputError
from bastion.defenses.text.output import make_canary, screen_output

_BODY = "Zq8wR2kT9vLm4XpB7nYc3HsD6fJg1AeKuW5oPq3N"  # 40 random-looking characters


def _b64url(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


_JWT = ".".join([_b64url({"alg": "HS256", "typ": "JWT"}), _b64url({"sub": "1234567890", "name": "Jane"}),
                 "dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"])
_PEM_BODY = "MIIEpAIBAAKCAQEA" + _BODY + "\n" + _BODY[::-1] + "=="

KEYS = [  # (rule, secret as it would appear in a reply)
    ("secret.aws-access-key", "AK" + "IA" + "Q7RZ2M4XW9PLK3VN"),
    ("secret.aws-access-key", "AS" + "IA" + "Q7RZ2M4XW9PLK3VN"),
    ("secret.github-token", "gh" + "p_" + _BODY[:36]),
    ("secret.github-token", "gh" + "o_" + _BODY[:36]),
    ("secret.github-token", "gh" + "s_" + _BODY[:36]),
    ("secret.github-token", "github" + "_pat_" + "11ABCDEFG0" + _BODY + "_" + _BODY[:20]),
    ("secret.slack-token", "xo" + "xb-" + "123456789012-1234567890123-" + _BODY[:24]),
    ("secret.stripe-key", "sk" + "_live_" + _BODY[:24]),
    ("secret.stripe-key", "rk" + "_live_" + _BODY[:24]),
    ("secret.google-api-key", "AI" + "za" + "Sy" + _BODY[:33]),
    ("secret.openai-key", "sk" + "-proj-" + _BODY + _BODY[:10]),
    ("secret.openai-key", "sk" + "-" + _BODY + _BODY[:8]),
    ("secret.anthropic-key", "sk" + "-ant-api03-" + _BODY + _BODY),
    ("secret.private-key", "-----BEGIN " + "RSA PRIVATE KEY-----\n" + _PEM_BODY + "\n-----END RSA PRIVATE KEY-----"),
    ("secret.private-key", "-----BEGIN " + "PRIVATE KEY-----\n" + _PEM_BODY + "\n-----END PRIVATE KEY-----"),
    ("secret.jwt", _JWT),
    ("secret.high-entropy", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "zQ8TmRkE2a"),  # an AWS secret access key's shape
    ("secret.high-entropy", "3f9a8c7e1b2d4f6a8c0e2b4d6f8a0c2e"),  # 32 hex characters
]


@pytest.mark.parametrize(("rule", "secret"), KEYS, ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(KEYS)])
def test_each_key_format_is_found_masked_and_redacted(rule: str, secret: str) -> None:
    verdict = screen_output(f"Here is the key you asked for:\n{secret}\nKeep it safe.")
    assert verdict.flagged and verdict.score == 1.0 and verdict.categories == ["secret"]
    assert [f.rule for f in verdict.findings] == [rule]  # and nothing else: no second report of the same span
    finding = verdict.findings[0]
    assert finding.layer == "output" and secret not in finding.evidence
    if rule != "secret.private-key":
        assert finding.evidence == secret[:4] + "…"
    assert verdict.redacted == f"Here is the key you asked for:\n[REDACTED:{rule}]\nKeep it safe."


def test_a_private_key_cut_off_before_its_footer_is_redacted_to_the_end() -> None:
    verdict = screen_output("-----BEGIN " + "EC PRIVATE KEY-----\n" + _PEM_BODY)
    assert verdict.redacted == "[REDACTED:secret.private-key]"


def test_assignments_redact_the_value_and_short_or_computed_ones_pass() -> None:
    code = 'db_password = "Tr0ub4dor&3x"\nconfig = {"api_key": "q9X2mL7vR4tK8sW1"}\n'
    verdict = screen_output(code)
    assert [f.rule for f in verdict.findings] == ["secret.assignment", "secret.assignment"]
    assert verdict.redacted == ('db_password = "[REDACTED:secret.assignment]"\n'
                                'config = {"api_key": "[REDACTED:secret.assignment]"}\n')
    harmless = ('x = "hello"\ntoken = get_token()\npassword = input("Password: ")\nmax_tokens = 256\n'
                'tokenizer = "bert-base-uncased"\nsecret = "abc"\n')
    assert not screen_output(harmless).flagged


@pytest.mark.parametrize(("text", "redacted"), [
    ("postgres://admin:S3cr3tPassw0rd@db.internal:5432/prod", "postgres://admin:[R]@db.internal:5432/prod"),
    ("DATABASE_URL=postgres://admin:S3cr3tPassw0rd@10.0.0.5/prod", "DATABASE_URL=postgres://admin:[R]@10.0.0.5/prod"),
    ("mysql://root:hunter2@localhost/app", "mysql://root:[R]@localhost/app"),
    ("redis://:mypassword123@cache:6379/0", "redis://:[R]@cache:6379/0"),
])
def test_a_password_in_a_connection_string_is_a_secret_not_an_email(text: str, redacted: str) -> None:
    verdict = screen_output(text)
    assert [f.rule for f in verdict.findings] == ["secret.url-credentials"]
    assert verdict.redacted == redacted.replace("[R]", "[REDACTED:secret.url-credentials]")


def test_unquoted_assignments_that_read_as_passwords_are_secrets_and_names_are_not() -> None:
    env = "DB_PASSWORD=correcthorsebatterystaple\npassword: hunter2hunter2\nAPI_KEY=Zq8-x!Lm2v\n"
    verdict = screen_output(env)
    assert [f.rule for f in verdict.findings] == ["secret.assignment"] * 3
    assert verdict.redacted == ("DB_PASSWORD=[REDACTED:secret.assignment]\npassword: [REDACTED:secret.assignment]\n"
                                "API_KEY=[REDACTED:secret.assignment]\n")
    harmless = ("token = get_token()\npassword = settings_password_value\ntoken = tokenizer2.encode(x)\n"
                "secret: classified\nPassword: enter it in the box below\nThe password: must be 12 characters.\n"
                "postgres://user:password@localhost/db\nDB_PASSWORD=${DB_PASS}\n")
    assert not screen_output(harmless).flagged


def test_a_canary_found_is_masked_in_the_evidence_as_secrets_are() -> None:
    canary = make_canary()
    verdict = screen_output(f"My instructions say {canary}.", canaries=[canary])
    assert [f.rule for f in verdict.findings] == ["canary.token"]
    assert verdict.findings[0].evidence == canary[:4] + "…" and canary not in verdict.model_dump_json()


def test_a_hex_digest_is_no_secret_unless_a_secret_word_names_it() -> None:
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert not screen_output(f"The file's sha256 is {sha256}.").flagged
    assert screen_output(f"SECRET_KEY={sha256}").findings[0].rule == "secret.assignment"
    assert screen_output(f"the secret key is {sha256}").findings[0].rule == "secret.high-entropy"


BENIGN = {
    "prose": "The quick brown fox jumps over the lazy dog. Robust accuracy fell from 91% to 47% at eps 8/255.",
    "code": "def area(r):\n    x = 'hello'\n    token = None\n    return 3.14159 * r ** 2\n",
    "git commit": "This was fixed in commit e83c5163316f89bfbde7d9ab23ca2e25604af290, see the changelog.",
    "uuid": "The sample id 550e8400-e29b-41d4-a716-446655440000 appears twice in the report.",
    "identifiers": "Call getUserAccountSettings2FAEnabled or HelloWorldExample12345 on XMLHttpRequestEventTarget1.",
    "paths and urls": "See https://docs.python.org/3/library/re.html and /usr/local/lib/python3.11/site-packages.",
    "command": "python -m pytest tests/test_text_output.py::test_each_key_format_is_found_masked_and_redacted -q",
    "documented example key": "Set it to AKIAIOSFODNN7EXAMPLE as the AWS docs do, or xoxb-your-token-here.",
    "data uri": "![dot](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk)",
}


@pytest.mark.parametrize("text", BENIGN.values(), ids=BENIGN.keys())
def test_ordinary_replies_are_not_flagged(text: str) -> None:
    verdict = screen_output(text)
    assert (verdict.flagged, verdict.findings, verdict.redacted) == (False, [], text)
    assert verdict.score == 0.0 and verdict.stats == {"chars": len(text)}


PII = [
    ("pii.email", "jane.doe+ml@mail.example.co.uk"),
    ("pii.phone", "+1 415 555 2671"),
    ("pii.phone", "+14155552671"),
    ("pii.phone", "(415) 555-2671"),
    ("pii.phone", "415-555-2671"),
    ("pii.phone", "+44 20 7946 0958"),
    ("pii.phone", "020 7946 0958"),
    ("pii.phone", "06 12 34 56 78"),
    ("pii.card-number", "4111 1111 1111 1111"),
    ("pii.card-number", "5500-0000-0000-0004"),
    ("pii.card-number", "3782 822463 10005"),
    ("pii.card-number", "4111111111111111"),
    ("pii.iban", "GB82 WEST 1234 5698 7654 32"),
    ("pii.iban", "DE89370400440532013000"),
]


@pytest.mark.parametrize(("rule", "value"), PII, ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(PII)])
def test_personal_data_is_found_and_redacted(rule: str, value: str) -> None:
    verdict = screen_output(f"Contact: {value}. Thanks!")
    assert [(f.category, f.rule) for f in verdict.findings] == [("pii", rule)]
    assert verdict.redacted == f"Contact: [REDACTED:{rule}]. Thanks!"


NOT_PII = {
    "luhn-invalid card": "Card 4111 1111 1111 1112 and 4111111111111112 were declined.",
    "luhn-valid, no scheme": "Reference 1234 5678 9012 3452.",
    "iban with a wrong check": "Pay to GB82 WEST 1234 5698 7654 33.",
    "order number": "Order 4815162342 ships on 2024-03-15 as ORD-2024-000123.",
    "years and dates": "Between 1999 and 2024, on 15.03.2024 and 01/05/2024 10 people came.",
    "long number": "The model has 123456789012 parameters, version 1.2.3, host 192.168.100.200.",
    "decimals": "pi is 3.14159265358979323846 and e is 2.718281828459045.",
}


@pytest.mark.parametrize("text", NOT_PII.values(), ids=NOT_PII.keys())
def test_numbers_that_are_not_personal_data_pass(text: str) -> None:
    assert screen_output(text).findings == []


def test_canary_tokens_are_found_plain_and_mangled() -> None:
    canary = make_canary()
    assert canary.startswith("bastion-canary-") and canary != make_canary()
    other = make_canary("other")
    mangled = [canary, canary.upper(), " ".join(canary), "\u200b".join(canary), canary.replace("-", " ")]
    for leak in mangled:
        verdict = screen_output(f"My instructions mention {leak} somewhere.", canaries=[other, canary])
        assert [(f.category, f.rule) for f in verdict.findings] == [("canary", "canary.token")], leak
        assert verdict.redacted == "My instructions mention [REDACTED:canary.token] somewhere."
    assert not screen_output(f"Only {canary[:-6]} is here.", canaries=[canary]).flagged


SYSTEM_PROMPT = ("You are Orion, the support assistant of Acme Bank. Never reveal account numbers. "
                 "Always answer in formal English and refuse questions about competitors.")


def test_a_reply_repeating_the_system_prompt_is_a_leak() -> None:
    reply = ("Sure! My instructions say: you are orion,\n the SUPPORT assistant of Acme   bank. "
             "Never reveal account numbers. Anything else?")
    verdict = screen_output(reply, system_prompt=SYSTEM_PROMPT)
    assert [(f.category, f.rule) for f in verdict.findings] == [("canary", "canary.system-prompt")]
    start, end = verdict.findings[0].span
    assert reply[start:end].startswith("you are orion") and reply[start:end].endswith("account numbers")
    assert verdict.redacted == "Sure! My instructions say: [REDACTED:canary.system-prompt]. Anything else?"


def test_a_reply_sharing_only_words_with_the_system_prompt_is_no_leak() -> None:
    reply = "Acme Bank's support assistant answers questions in English; account numbers are never shown."
    assert not screen_output(reply, system_prompt=SYSTEM_PROMPT).flagged


def test_a_mixed_reply_keeps_no_secret_in_its_redacted_text() -> None:
    canary = make_canary()
    leaks = ["AK" + "IA" + "Q7RZ2M4XW9PLK3VN", "gh" + "p_" + _BODY[:36], "jane@corp.io", "4111 1111 1111 1111", canary]
    reply = (f"Key {leaks[0]}, token {leaks[1]}; write to {leaks[2]} and pay with {leaks[3]}. "
             f"Marker: {leaks[4]}. {SYSTEM_PROMPT}")
    verdict = screen_output(reply, canaries=[canary], system_prompt=SYSTEM_PROMPT)
    assert verdict.categories == ["canary", "pii", "secret"]
    assert not any(leak in verdict.redacted for leak in leaks) and "Acme Bank" not in verdict.redacted
    assert [f.span for f in verdict.findings] == sorted(f.span for f in verdict.findings)
    assert not any(leak in f.evidence for f in verdict.findings for leak in leaks[:4])


def test_a_megabyte_of_adversarial_text_is_screened_in_linear_time() -> None:
    pieces = ["a" * 100_000, "1" * 100_000, "a@" * 50_000, "+1 " * 33_000, "1234 " * 20_000, "eyJ" * 33_000,
              "sk-" * 33_000, "password = '" * 8_000, "Orion " * 16_000, "a://b:" * 16_000,
              "password: a1 " * 8_000]
    key = "sk" + "_live_" + _BODY[:24]
    filler = " ".join(pieces) * 2
    text = filler[: 1_048_576 - len(key) - 1] + " " + key  # exactly the default limit
    # no clock here: a quadratic pattern would take hours on this text, past CI's time limit
    verdict = screen_output(text, canaries=[make_canary()], system_prompt=SYSTEM_PROMPT)
    assert len(text) == 1_048_576 and [f.rule for f in verdict.findings] == ["secret.stripe-key"]


def test_bad_input_is_refused_with_what_to_fix() -> None:
    assert screen_output("x" * 100, max_chars=100).stats == {"chars": 100}
    with pytest.raises(InputError, match="the text is 101 characters, over the limit of 100"):
        screen_output("x" * 101, max_chars=100)
    with pytest.raises(InputError, match="must be a str"):
        screen_output(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not a single string"):
        screen_output("hi", canaries=make_canary())  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least 8 letters or digits"):
        screen_output("hi", canaries=["abc"])
    with pytest.raises(InputError, match="without whitespace"):
        make_canary("my canary")
