"""`EmailAddress`: pydantic's `EmailStr`, with a fast path for the plain addresses most orders
carry.

`EmailStr` hands every address to email-validator, whose Unicode-aware domain checks (UTS-46
remapping and a category lookup per character) cost about 30 µs, most of the CPU that validating
an order takes. An address of plain ASCII atoms (`first.last+tag@mail.example.com`) needs none
of that: such an address is valid exactly when it is short enough, has no reserved label shape,
and is not in a special-use domain, and email-validator's normal form of it only lowercases the
domain. Those addresses are decided here; everything else (quoted or Unicode parts, display
names, surrounding spaces, `--` labels, role mailboxes such as `Postmaster@`, reserved domains,
anything invalid) goes to `EmailStr`'s own validation, unchanged, so the accepted set, the normal
form and the error messages stay email-validator's. tests/kit/test_email_address.py checks
the two agree.
"""

import re
from typing import TYPE_CHECKING, Any

import email_validator
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic.networks import validate_email
from pydantic_core import core_schema

# RFC 5322 dot-atoms for the local part (email-validator's DOT_ATOM_TEXT); LDH labels of at most
# 63 characters for the domain, whose last label is letters only (a top-level domain).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})", re.ASCII
)
_ROLE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def _plain_address(value: str) -> str | None:
    """The normal form of `value` if it is a plain address email-validator accepts, else None
    (undecided: not necessarily invalid)."""
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None or len(value) > EMAIL_MAX_LENGTH:
        return None
    local, domain = match.group("local", "domain")
    # `ab--c` labels are refused unless Punycode, which needs decoding; role mailboxes are
    # lowercased by email-validator. Both are rare: the full validation decides them.
    if "--" in domain or local.lower() in _ROLE_MAILBOXES:
        return None
    domain = domain.lower()
    # Read at call time, like email-validator does: the list is its module's to change.
    for reserved in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        if domain == reserved or domain.endswith("." + reserved):
            return None
    return f"{local}@{domain}"


class _EmailAddressType:
    """A `str` validated and normalised as `pydantic.EmailStr` does it."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: type[Any], _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # EmailStr's schema, a type of its own rather than Annotated metadata, so that a field's
        # max_length still applies after the address's validation, as it did to EmailStr.
        return core_schema.no_info_after_validator_function(_validate, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(type="string", format="email")
        return json_schema


def _validate(value: str, /) -> str:
    plain = _plain_address(value)
    return plain if plain is not None else validate_email(value)[1]


# Validated values are plain `str`, as with EmailStr, which does the same for type checkers.
if TYPE_CHECKING:
    EmailAddress = str
else:
    EmailAddress = _EmailAddressType
