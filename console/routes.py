"""The console's pages and actions under /console: HTML in, calls to `ops/`, HTML out.

Signed-in operators only (console.deps). Every POST carries the session's CSRF token; every
action is written to the audit log, refused ones included.
"""

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console import charts
from console.assets import CACHE_CONTROL, asset
from console.deps import (
    COOKIE,
    ConsoleState,
    Operator,
    OperatorDep,
    StateDep,
    app_console_state,
    console_path,
    first,
    is_local_plain_http,
    read_form,
    record_action,
    same_origin,
)
from console.pages import render
from kit.db import connection
from kit.errors import DomainError
from ops import audit, queue
from ops.audit import AuditOutcome
from ops.health import health, queue_report
from ops.jobs import job_detail, list_jobs
from ops.outbox import outbox_status
from ops.queue_actions import abort, purge, retry_dead, retry_job
from ops.timeline import order_timeline
from ops.webhooks import list_endpoints
from shop.clients import repository as clients_repo
from shop.clients.auth import hash_api_key

PAGE_SIZE = 25
# ops reads jobs from the front of the queue and ARQ's results: a page costs all those before it.
MAX_PAGE = 40

router = APIRouter(prefix="/console", include_in_schema=False)


# Sign-in and sign-out


@router.get("", response_class=HTMLResponse)
async def root(request: Request) -> Response:
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = "") -> Response:
    return render(request, "sign_in.html", next=console_path(next), error=None)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    state = app_console_state(request)
    form = await read_form(request)
    target = console_path(first(form, "next")) or "/console/overview"
    if not same_origin(request):
        return render(request, "sign_in.html", 403, next=target, error="Cross-site sign-in.")
    api_key = first(form, "api_key")
    async with connection(state.pool, state.settings.db_pool_acquire_timeout_s) as conn:
        client = (
            await clients_repo.find_active_by_key_hash(conn, hash_api_key(api_key))
            if api_key
            else None
        )
    if client is None or not hmac.compare_digest(client.key_hash, hash_api_key(api_key)):
        return render(request, "sign_in.html", 401, next=target, error="Unknown or revoked key.")
    if not client.is_admin or client.console_role is None:
        await record_action(
            state,
            (client.id, client.name, None),
            "sign-in",
            "console",
            AuditOutcome.REFUSED,
            "not an admin key with a console role",
        )
        return render(request, "forbidden.html", 403, reason="This key has no console access.")
    session = await state.sessions.create(client.id)
    await record_action(
        state, (client.id, client.name, client.console_role), "sign-in", "console", AuditOutcome.OK
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=state.sessions.ttl_s,
        path="/console",
        secure=not is_local_plain_http(request),
        httponly=True,
        samesite="strict",
    )
    return response


# Actions: each checks the session, the role and the CSRF token, then writes the audit log.

Action = Callable[[ConsoleState, dict[str, list[str]]], Awaitable[tuple[str, str]]]


async def _act(
    request: Request, user: Operator, state: ConsoleState, action: str, run: Action, back: str
) -> Response:
    """Runs `run` (returning the target and the message to show) for an operator."""
    form = await read_form(request)
    # What the action is about, as the form names it (kept when the action is refused).
    target = (
        first(form, "job_id")
        or ", ".join(form.get("selected", []))
        or first(form, "queue")
        or first(form, "function")
        or action
    )

    async def refused(reason: str) -> Response:
        await record_action(state, user.who, action, target, AuditOutcome.REFUSED, reason)
        return render(request, "forbidden.html", 403, user=user, reason=reason)

    sent = first(form, "csrf")
    if not sent or not hmac.compare_digest(sent, user.session.csrf_token):
        return await refused("The form's CSRF token does not match this session.")
    if not same_origin(request):
        return await refused("The request did not come from the console's pages.")
    if not user.can_act:
        return await refused(f"The {user.role.value} role may look but not act.")
    try:
        target, message = await run(state, form)
    except DomainError as exc:
        outcome, message, detail = AuditOutcome.FAILED, exc.detail, exc.detail
    else:
        outcome, detail = AuditOutcome.OK, message
    await record_action(state, user.who, action, target, outcome, detail)
    await state.sessions.set_flash(user.session.token, message)
    return RedirectResponse(console_path(first(form, "back")) or back, status_code=303)


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, user: OperatorDep, state: StateDep) -> Response:
    form = await read_form(request)
    sent = first(form, "csrf")
    if not sent or not hmac.compare_digest(sent, user.session.csrf_token):
        return render(request, "forbidden.html", 403, user=user, reason="CSRF token mismatch.")
    await state.sessions.delete(user.session.token)
    await record_action(state, user.who, "sign-out", "console", AuditOutcome.OK)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


async def _retry(state: ConsoleState, form: dict[str, list[str]]) -> tuple[str, str]:
    # A row's own button names one job; "retry selected" sends the ticked boxes.
    one = first(form, "job_id")
    job_ids = [one] if one else [value for value in form.get("selected", []) if value]
    if not job_ids:
        return "", "No job was selected."
    done = []
    failed = []
    for job_id in job_ids:
        try:
            outcome = await retry_job(state.pool, state.settings, state.queue, job_id)
        except DomainError as exc:
            if len(job_ids) == 1:
                raise
            failed.append(f"{job_id}: {exc.detail}")
        else:
            done.append(f"{outcome.job_id} as {outcome.new_job_id}")
    message = f"Retried {len(done)} job(s): {', '.join(done)}." if done else ""
    if failed:
        message += f" Not retried: {'; '.join(failed)}."
    return ", ".join(job_ids), message.strip()


async def _retry_all(state: ConsoleState, form: dict[str, list[str]]) -> tuple[str, str]:
    function = first(form, "function") or None
    done = await retry_dead(state.pool, state.settings, state.queue, function=function)
    retried = [item for item in done if item.error is None]
    target = f"every dead job{f' of {function}' if function else ''}"
    return target, (
        f"Retried {len(retried)} dead job(s)"
        + (
            f"; {len(done) - len(retried)} not (retried meanwhile)."
            if len(done) > len(retried)
            else "."
        )
    )


async def _abort(state: ConsoleState, form: dict[str, list[str]]) -> tuple[str, str]:
    job_id = first(form, "job_id")
    was = await abort(state.queue, state.settings.queue_name, job_id)
    return job_id, f"Abort requested for {job_id} (was {was})."


async def _purge(state: ConsoleState, form: dict[str, list[str]]) -> tuple[str, str]:
    name = first(form, "queue")
    if not name or first(form, "confirm") != name:
        raise _ConfirmationMismatch(f"Type the queue's name, {name}, to purge it.")
    removed = await purge(state.queue, name)
    return name, f"Purged {removed} waiting job(s) from {name}."


class _ConfirmationMismatch(DomainError):
    status = 422
    title = "Not confirmed"


def _action_route(action: str, run: Action, back: str) -> Callable[..., Awaitable[Response]]:
    async def endpoint(request: Request, user: OperatorDep, state: StateDep) -> Response:
        return await _act(request, user, state, action, run, back)

    return endpoint


for _action, _run, _back in (
    ("retry", _retry, "/console/dead"),
    ("retry-all", _retry_all, "/console/dead"),
    ("abort", _abort, "/console/jobs"),
    ("purge", _purge, "/console/overview"),
):
    router.add_api_route(
        f"/actions/{_action}",
        _action_route(_action, _run, _back),
        methods=["POST"],
        response_class=HTMLResponse,
    )


# Pages


@router.get("/overview", response_class=HTMLResponse)
async def overview(request: Request, user: OperatorDep, state: StateDep) -> Response:
    report = await queue_report(state.pool, state.queue, state.settings)
    hour = await queue.last_hour(state.queue, state.settings.queue_name)
    return render(
        request,
        "overview.html",
        user=user,
        nav="overview",
        report=report,
        workers=await queue.live_workers(state.queue, state.settings.queue_name),
        outbox=await outbox_status(state.pool, state.settings),
        health=await health(state.pool, state.queue, state.settings),
        throughput=charts.throughput_chart(hour.minutes),
        run_time=charts.run_time_chart(hour.minutes),
    )


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(
    request: Request,
    user: OperatorDep,
    state: StateDep,
    status: str = "",
    function: str = "",
    search: str = "",
    page: int = 1,
) -> Response:
    page = min(max(page, 1), MAX_PAGE)
    chosen = status if status in queue.STATUSES else None
    # ops reads jobs in order from the front, so a page is the tail of the first page * size.
    found = await list_jobs(
        state.pool,
        state.queue,
        state.settings,
        status=chosen,
        function=function or None,
        search=search or None,
        limit=page * PAGE_SIZE + 1,
    )
    shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    filters = {"status": chosen or "", "function": function, "search": search}
    return render(
        request,
        "jobs.html",
        user=user,
        nav="jobs",
        jobs=shown,
        statuses=queue.STATUSES,
        filters=filters,
        page=page,
        previous_url=None if page == 1 else "?" + urlencode({**filters, "page": page - 1}),
        next_url=None
        if len(found) <= page * PAGE_SIZE or page == MAX_PAGE
        else "?" + urlencode({**filters, "page": page + 1}),
    )


@router.get("/job/{job_id:path}", response_class=HTMLResponse)
async def job_page(request: Request, user: OperatorDep, state: StateDep, job_id: str) -> Response:
    detail = await job_detail(state.pool, state.queue, state.settings, job_id)
    if detail is None:
        return render(request, "not_found.html", 404, user=user, what=f"There is no job {job_id}.")
    job = detail.job or detail.ledger[0]
    return render(
        request,
        "job.html",
        user=user,
        nav="jobs",
        detail=detail,
        job=job,
        # What ops.queue_actions.retry_job accepts: a death not yet retried, or a failure
        # ARQ keeps that was never recorded as dead.
        can_retry=any(dead.redriven_job_id is None for dead in detail.ledger)
        or (job.status == queue.FAILED and not detail.ledger),
        can_abort=job.status in (queue.QUEUED, queue.DEFERRED, queue.IN_PROGRESS),
    )


@router.get("/dead", response_class=HTMLResponse)
async def dead_page(
    request: Request, user: OperatorDep, state: StateDep, function: str = ""
) -> Response:
    dead = await list_jobs(
        state.pool,
        state.queue,
        state.settings,
        status=queue.DEAD,
        function=function or None,
        limit=200,
    )
    return render(request, "dead.html", user=user, nav="dead", jobs=dead, function=function)


@router.get("/dead/retry-all", response_class=HTMLResponse)
async def retry_all_page(
    request: Request, user: OperatorDep, state: StateDep, function: str = ""
) -> Response:
    """The dry run: how many dead jobs a retry of all would re-drive, before it is confirmed."""
    would = await retry_dead(
        state.pool, state.settings, state.queue, function=function or None, dry_run=True
    )
    return render(request, "retry_all.html", user=user, nav="dead", would=would, function=function)


@router.get("/purge", response_class=HTMLResponse)
async def purge_page(
    request: Request, user: OperatorDep, state: StateDep, queue_name: str = ""
) -> Response:
    name = queue_name or state.settings.queue_name
    stats = await queue.queue_stats(state.queue, name)
    return render(request, "purge.html", user=user, nav="overview", stats=stats)


@router.get("/orders", response_class=HTMLResponse)
async def find_order(request: Request, id: str = "") -> Response:
    if id.strip().isdigit():
        return RedirectResponse(f"/console/orders/{int(id)}", status_code=303)
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    request: Request, user: OperatorDep, state: StateDep, order_id: int
) -> Response:
    timeline = await order_timeline(state.pool, state.queue, state.settings, order_id)
    if timeline is None:
        return render(
            request, "not_found.html", 404, user=user, what=f"There is no order {order_id}."
        )
    return render(request, "order.html", user=user, nav="", timeline=timeline)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request, user: OperatorDep, state: StateDep) -> Response:
    endpoints = await list_endpoints(state.pool, state.settings)
    return render(request, "webhooks.html", user=user, nav="webhooks", endpoints=endpoints)


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, user: OperatorDep, state: StateDep, before: int | None = None
) -> Response:
    entries = await audit.recent(state.pool, state.settings, before_id=before, limit=PAGE_SIZE)
    return render(
        request,
        "audit.html",
        user=user,
        nav="audit",
        entries=entries,
        older_url=f"?before={entries[-1].id}" if len(entries) == PAGE_SIZE else None,
    )


@router.get("/static/{name}")
async def static(name: str) -> Response:
    found = asset(name)
    if found is None:
        return Response(status_code=404)
    return Response(
        found.body,
        media_type=found.media_type,
        headers={"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
    )
