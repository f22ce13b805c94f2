"""Personal data never reaches an operator's screen, whatever a job's arguments carry."""

from datetime import UTC, datetime

from ops.redaction import REDACTED, redact, redact_text


def test_personal_keys_are_masked_at_any_depth_whatever_their_case() -> None:
    shown = redact({"order": 7, "Customer": {"x": 1}, "items": [{"Email": "a@b.c", "sku": "S1"}]})

    assert shown == {"order": 7, "Customer": REDACTED, "items": [{"Email": REDACTED, "sku": "S1"}]}


def test_email_addresses_are_masked_inside_any_text() -> None:
    assert redact_text("mail to <ada@example.com> failed") == f"mail to <{REDACTED}> failed"
    assert redact(["ada@example.com", 3, None, True, 1.5]) == [REDACTED, 3, None, True, 1.5]


def test_other_values_are_shown_as_their_repr_with_emails_masked() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)

    assert redact(when) == repr(when)
    assert redact(ValueError("no such user grace@example.com")) == (
        f"ValueError('no such user {REDACTED}')"
    )
    assert redact(("a", {"b"})) == ["a", ["b"]]
