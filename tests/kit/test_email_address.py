"""`EmailAddress` decides exactly as pydantic's `EmailStr`: the same addresses accepted, in the
same normal form, and the same errors for the rest."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, EmailStr, Field, ValidationError

from kit.email_address import EmailAddress, _plain_address


class _Before(BaseModel):
    email: EmailStr = Field(max_length=320)


class _Now(BaseModel):
    email: EmailAddress = Field(max_length=320)


def _outcome(model: type[BaseModel], value: object) -> Any:
    try:
        return model.model_validate({"email": value}).model_dump()
    except ValidationError as exc:
        return exc.errors(include_url=False)


ADDRESSES = [
    "ada@example.com",
    "Ada.Lovelace+orders@Mail.Example.COM",
    "c123@r7-a1b2c3.example.com",
    "o'brien@example.ie",
    "x_y-z!#$%&'*+/=?^`{|}~@example.org",
    "a@b.co",
    "a@b.c",
    "a@b.c1",
    "a@b",
    "a@localhost",
    "a@printer.local",
    "a@example.test",
    "a@x.onion",
    "a@in-addr.arpa",
    "Postmaster@Example.com",
    "INFO@example.com",
    "a@ab--cd.example.com",
    "a@xn--bcher-kva.ch",
    "a@-example.com",
    "a@example-.com",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "a@@example.com",
    "@example.com",
    "a@",
    "a",
    "",
    " ada@example.com ",
    "Ada Lovelace <ada@example.com>",
    '"ada lovelace"@example.com',
    "ada@[192.0.2.1]",
    "ünïcode@example.de",
    "ada@bücher.de",
    "ada@EXAMPLE.com\n",
    "a\x00da@example.com",
    "ada@exa_mple.com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a" * 240 + "@example.com",
    "a" * 250 + "@example.com",
    "a" * 330 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 60] * 4) + ".com",
    "a@example." + "c" * 63,
    "a@example." + "c" * 64,
    42,
    None,
]


@pytest.mark.parametrize("value", ADDRESSES)
def test_decides_as_emailstr(value: object) -> None:
    assert _outcome(_Now, value) == _outcome(_Before, value)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.emails()
    | st.text(alphabet="aZ09.-_+@'!~ \"<>[]ü", max_size=30)
    | st.builds(
        "{}@{}.{}".format,
        st.text(alphabet="aB1.-_+!'", min_size=0, max_size=12),
        st.text(alphabet="aB1.-", min_size=0, max_size=12),
        st.sampled_from(["com", "C0M", "test", "local", "x", "co-uk", "", "ORG"]),
    )
)
def test_decides_as_emailstr_whatever_the_text(value: str) -> None:
    assert _outcome(_Now, value) == _outcome(_Before, value)


def test_plain_addresses_skip_the_full_validation() -> None:
    # The point of the type: the addresses orders carry are decided without email-validator.
    assert _plain_address("Ada.Lovelace+orders@Mail.Example.COM") == (
        "Ada.Lovelace+orders@mail.example.com"
    )
    assert _plain_address("ada@bücher.de") is None


def test_documents_the_field_as_emailstr_did() -> None:
    before = _Before.model_json_schema()["properties"]
    assert _Now.model_json_schema()["properties"] == before
