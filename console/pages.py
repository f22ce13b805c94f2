"""How the console's pages are made: Jinja2 templates (console/templates), the headers every page
carries, and the values the templates put into words (`ops.display`, as `ordersctl` does)."""

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from console.assets import asset_url
from console.deps import Operator
from ops.display import age, short, when

# Pages with live regions fetch themselves again this often while their tab is visible.
REFRESH_S = 5
# Pages are never cached (they show live state and a CSRF token) and never framed.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on POST.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


_templates = Environment(
    loader=PackageLoader("console", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(asset=asset_url, refresh_s=REFRESH_S)
_templates.filters.update(age=age, short=short, when=when)


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    user: Operator | None = None,
    **context: Any,
) -> HTMLResponse:
    context.setdefault("nav", "")
    html = _templates.get_template(template).render(
        request=request,
        user=user,
        csrf=None if user is None else user.session.csrf_token,
        flash=None if user is None else user.session.flash,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)
