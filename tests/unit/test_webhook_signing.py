"""Standard Webhooks v1 signing, pinned by a known-answer vector and the reference package."""

from __future__ import annotations

import datetime as dt

import pytest
import standardwebhooks

from service.webhooks import signing

# the vector from the Standard Webhooks reference libraries' own test suites
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_known_answer_vector() -> None:
    assert signing.signature(signing.secret_key(SECRET), MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED


def test_signature_matches_the_reference_package() -> None:
    secret = signing.new_secret()
    when = dt.datetime.fromtimestamp(TIMESTAMP, tz=dt.UTC)
    ours = signing.signature(signing.secret_key(secret), MSG_ID, TIMESTAMP, PAYLOAD)
    assert ours == standardwebhooks.Webhook(secret).sign(MSG_ID, when, PAYLOAD.decode())


def test_rotation_header_verifies_with_either_secret() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = signing.headers([signing.secret_key(new), signing.secret_key(old)], MSG_ID, now, PAYLOAD)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(PAYLOAD, headers) == {"test": 2432232314}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(signing.new_secret()).verify(PAYLOAD, headers)


def test_headers_carry_the_standard_names_and_a_versioned_user_agent() -> None:
    headers = signing.headers([signing.secret_key(SECRET)], MSG_ID, TIMESTAMP, PAYLOAD)
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == str(TIMESTAMP)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("Callboard-Webhooks/")


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(signing.secret_key(a)) == 32


@pytest.mark.parametrize("bad", ["whsec_not base64!", "whsec_" + "QUJD", ""])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(signing.InvalidSecret):
        signing.secret_key(bad)
