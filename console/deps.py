"""Who is asking, and what the console works with: sessions, roles, forms, the audit log's who.

A session cookie (console.sessions) names an admin client whose console role is read again on
every request, so a revoked key or a changed role takes effect at once.
"""

import ipaddress
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
from arq.connections import ArqRedis
from fastapi import Depends, HTTPException, Request

from console.sessions import Session, SessionStore
from kit.db import connection
from kit.settings import Settings
from ops import audit
from ops.audit import AuditOutcome
from shop.clients import repository as clients_repo
from shop.models import ConsoleRole

COOKIE = "console_session"
_LOCALHOST_NAMES = {"localhost"}


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """What the console needs beside the API's state: an ARQ client (to enqueue) and sessions."""

    settings: Settings
    pool: asyncpg.Pool
    queue: ArqRedis
    sessions: SessionStore


@dataclass(frozen=True, slots=True)
class Operator:
    client_id: int
    name: str
    role: ConsoleRole
    session: Session

    @property
    def can_act(self) -> bool:
        return self.role is ConsoleRole.OPERATOR

    @property
    def who(self) -> "Who":
        return (self.client_id, self.name, self.role.value)


# The audit log's who: client id, its name, its console role.
Who = tuple[int, str, str | None]


async def record_action(
    state: ConsoleState,
    who: Who,
    action: str,
    target: str,
    outcome: AuditOutcome,
    detail: str | None = None,
) -> None:
    client_id, name, role = who
    await audit.record(
        state.pool,
        state.settings,
        client_id=client_id,
        client_name=name,
        role=role,
        action=action,
        target=target,
        outcome=outcome,
        detail=detail,
    )


def app_console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def is_local_plain_http(request: Request) -> bool:
    if request.url.scheme != "http":
        return False
    host = request.url.hostname or ""
    if host in _LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/console/sign-in?{urlencode({'next': target})}"


class _SignInRequired(HTTPException):
    """Sends whoever is not signed in to the sign-in page (a 303 with its Location)."""

    def __init__(self, request: Request) -> None:
        super().__init__(status_code=303, headers={"Location": _sign_in_url(request)})


async def current_operator(request: Request) -> Operator | None:
    """The signed-in operator, or None (no cookie, session expired, key revoked, no role)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    state = app_console_state(request)
    session = await state.sessions.load(token)
    if session is None:
        return None
    async with connection(state.pool, state.settings.db_pool_acquire_timeout_s) as conn:
        client = await clients_repo.find_active(conn, session.client_id)
    if client is None or not client.is_admin or client.console_role is None:
        await state.sessions.delete(token)
        return None
    return Operator(client.id, client.name, ConsoleRole(client.console_role), session)


async def signed_in(request: Request) -> Operator:
    user = await current_operator(request)
    if user is None:
        raise _SignInRequired(request)
    return user


async def console_state(request: Request) -> ConsoleState:
    return app_console_state(request)


OperatorDep = Annotated[Operator, Depends(signed_in)]
StateDep = Annotated[ConsoleState, Depends(console_state)]


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (the console's forms post nothing else)."""
    fields: dict[str, list[str]] = {}
    for name, value in parse_qsl((await request.body()).decode(errors="replace")):
        fields.setdefault(name, []).append(value)
    return fields


def first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


def same_origin(request: Request) -> bool:
    """A POST from the console's own pages: Origin (sent by browsers on POST) names this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def console_path(value: str) -> str:
    # Only a path of the console itself: never an open redirect.
    return value if value.startswith("/console/") and not value.startswith("//") else ""
