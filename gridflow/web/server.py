"""The web server (aiohttp): household pages, the operator view, their JSON and a health check.

Routes::

    GET  /                                  sign-in form
    POST /login                             form (role, household_id, code, csrf) -> session cookie, redirect
    POST /logout                            form (csrf): end the session
    GET  /household/<id>[?code=...]         the household page      (its household's session or code)
    GET  /api/household/<id>                the same data as JSON   (session, or Authorization: Bearer <code>)
    GET  /operator[?code=...]               the operator view       (a viewer's or operator's session or code)
    GET  /api/operator                      the same data as JSON
    POST /operator/revoke                   form (household_id, csrf): revoke a household's access (operator role)
    GET  /healthz                           liveness and feed counters (no data)

An access code is exchanged once for a session cookie (HttpOnly, SameSite=Strict, Secure with
HTTPS, i.e. ``web.tls_certfile``, or ``web.cookie_secure`` behind a TLS proxy); a link that carries one (``?code=``) signs in and redirects to the same URL
without it, so the code never stays in the address bar, history or a bookmark. A missing, wrong,
expired or revoked code or session gets 403 and the sign-in form, never data. Failed sign-ins are
counted per client address and per account and lock the key out for ``web.lockout_s`` (429 with
``Retry-After``). Every form carries a CSRF token bound to the session (or, for sign-in, to a
pre-session cookie) and cross-site posts are refused. Unexpected errors answer with an incident
number only; the details go to the server's log.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape
import secrets
import signal
import ssl
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from gridflow.settings import Settings
from gridflow.web.auth import Credentials, Principal, Session, SignInThrottle
from gridflow.web.feed import TopicFeed
from gridflow.web.household import render_household
from gridflow.web.layout import login_page, notice_page, revoke_card, signout_form
from gridflow.web.operator import render_operator
from gridflow.web.store import HOUSEHOLD_ID, PageStore

log = logging.getLogger("gridflow.web")

SESSION_COOKIE, LOGIN_COOKIE = "gridflow_session", "gridflow_login"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000"
STORE = web.AppKey("store", PageStore)
CREDENTIALS = web.AppKey("credentials", Credentials)
ACCOUNTS = web.AppKey("accounts", SignInThrottle)  # failed sign-ins per account
ADDRESSES = web.AppKey("addresses", SignInThrottle)  # ... and per client address
SETTINGS = web.AppKey("settings", Settings)
FEED: web.AppKey[TopicFeed | None] = web.AppKey("feed")  # None when the app serves without a Kafka feed


@web.middleware
async def _guard(request: web.Request, handler):
    """Security headers on every answer; cross-site posts refused; no internals in error pages."""
    headers = dict(SECURITY_HEADERS)
    if _secure(request):
        headers["Strict-Transport-Security"] = HSTS
    try:
        if request.method == "POST" and _cross_site(request):
            response = _html(notice_page("Refused", "This form was sent from another site.", back="/"), 403)
        else:
            response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405/413 answers: short texts, no data
        exc.headers.update(headers)
        raise
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("incident %s: %s %s failed", incident, request.method, request.path)
        response = _html(
            notice_page("Something went wrong", f"Please try again later (incident {incident}).", back="/"), 500
        )
    response.headers.update(headers)
    return response


def _secure(request: web.Request) -> bool:
    """Served over TLS, here or by a proxy in front: cookies are Secure and HSTS is sent."""
    web_settings = request.app[SETTINGS].web
    return web_settings.https or web_settings.cookie_secure


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host)


def build_app(
    settings: Settings, store: PageStore, credentials: Credentials, feed: TopicFeed | None = None
) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=16 * 1024)
    app[STORE], app[CREDENTIALS], app[SETTINGS], app[FEED] = store, credentials, settings, feed
    limits = settings.web
    app[ACCOUNTS] = SignInThrottle(limits.login_max_failures, limits.login_window_s, limits.lockout_s)
    app[ADDRESSES] = SignInThrottle(limits.login_ip_max_failures, limits.login_window_s, limits.lockout_s)
    app.add_routes(
        [
            web.get("/", _index),
            web.post("/login", _login),
            web.post("/logout", _logout),
            web.get("/household/{household_id}", _household_page),
            web.get("/api/household/{household_id}", _household_json),
            web.get("/operator", _operator_page),
            web.get("/operator/history", _history_page),
            web.get("/api/operator", _operator_json),
            web.post("/operator/revoke", _revoke),
            web.get("/healthz", _health),
        ]
    )
    return app


# --- answers -------------------------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _sign_in(request: web.Request, message: str, *, operator: bool = False, status: int = 403) -> web.Response:
    """The sign-in form, with a CSRF token bound to a pre-session cookie (set here when missing)."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    fresh = not nonce or len(nonce) > 64
    if fresh:
        nonce = secrets.token_urlsafe(16)
    response = _html(login_page(message, csrf=request.app[CREDENTIALS].mac("login", nonce), operator=operator), status)
    if fresh:
        _set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=None)
    return response


def _locked_out(seconds: float, api: bool = False) -> web.Response:
    retry = {"Retry-After": str(max(1, int(seconds + 0.999)))}
    if api:
        return web.json_response({"error": "too many failed sign-ins; try later"}, status=429, headers=retry)
    text = notice_page("Too many attempts", "Too many wrong access codes. Please try again later.", back="/")
    return web.Response(text=text, status=429, content_type="text/html", headers=retry)


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=_secure(request),
        max_age=max_age,
    )


# --- who is asking -------------------------------------------------------------------------------


def _check_code(request: web.Request, code: str, account: str) -> Principal | None | float:
    """The principal of ``code``; None when wrong (the failure is counted); seconds to wait when locked out.

    Failures count against the account as tried from this address (a household, or the operator view)
    and, with a looser limit since many homes may share one address, against the address. Never against
    the account alone: then anyone could keep a household or the operators locked out by failing for
    them, while guessing a 100-bit code is hopeless anyway."""
    address = f"ip:{request.remote}"
    accounts, addresses, key = request.app[ACCOUNTS], request.app[ADDRESSES], f"{account}@{address}"
    wait = max(accounts.locked([key]), addresses.locked([address]))
    if wait > 0:
        return wait
    principal = request.app[CREDENTIALS].verify(code)
    if principal is None:
        accounts.fail([key])
        addresses.fail([address])
        return None
    accounts.succeed(key)
    return principal


def _session(request: web.Request) -> Session | None:
    return request.app[CREDENTIALS].session(request.cookies.get(SESSION_COOKIE))


def _start_session(request: web.Request, response: web.StreamResponse, principal: Principal) -> None:
    credentials = request.app[CREDENTIALS]
    old = _session(request)
    if old is not None:
        credentials.close_session(old.digest)  # never keep a session id across a sign-in
    value, _ = credentials.open_session(principal)
    max_age = credentials.limits(principal.role).max_ms // 1000 if principal.role == "household" else None
    _set_cookie(request, response, SESSION_COOKIE, value, max_age)
    if LOGIN_COOKIE in request.cookies:
        response.del_cookie(LOGIN_COOKIE, path="/")


def _csrf(request: web.Request, session: Session) -> str:
    return request.app[CREDENTIALS].mac("session", session.digest)


async def _form_with_csrf(request: web.Request, expected: str) -> dict | None:
    form = await request.post()
    presented = str(form.get("csrf", ""))
    if not expected or not secrets.compare_digest(presented.encode(), expected.encode()):
        return None
    return {key: str(value) for key, value in form.items()}


def _to_clean_url(request: web.Request) -> web.Response:
    """Where a link with a code goes once signed in: the same page without the code. Followed from another
    site (a mail, a letter's QR code app), a redirect would still count as cross-site and the browser would
    withhold the new SameSite=Strict cookie from it, so that case gets a page that moves on by itself."""
    clean = _clean_url(request)
    if request.headers.get("Sec-Fetch-Site") != "cross-site":
        return _redirect(clean)
    target = escape(clean)
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
        f'<title>Signing in - gridflow</title></head><body><p>Signed in. <a href="{target}">Open your page</a>.</p>'
        "</body></html>"
    )
    return _html(body)


def _link_code(request: web.Request) -> str | None:
    return request.query.get("code") or request.query.get("token")


def _clean_url(request: web.Request) -> str:
    query = {k: v for k, v in request.query.items() if k not in ("code", "token")}
    return str(request.rel_url.with_query(query))


# --- pages ---------------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    return _sign_in(request, "Sign in with your household number and access code.", status=200)


def _sign_in_with(
    request: web.Request,
    code: str,
    account: str,
    opens: Callable[[Principal], bool],
    refused: Callable[[], web.Response],
    onward: Callable[[], web.Response],
) -> web.Response:
    """Sign in with ``code`` (from the form or a link): ``onward()`` with a new session when the code
    opens the page, ``refused()`` when it does not, 429 while the account or address is locked out."""
    principal = _check_code(request, code, account)
    if isinstance(principal, float):
        return _locked_out(principal)
    if principal is None or not opens(principal):
        return refused()
    response = onward()
    _start_session(request, response, principal)
    return response


def _page_session(
    request: web.Request, account: str, opens: Callable[[Principal], bool], refused: Callable[[], web.Response]
) -> Session | web.Response:
    """The session that opens this page; or, for a link with a code, the sign-in that moves on to the
    clean URL; or ``refused()``."""
    code = _link_code(request)
    if code is not None:
        return _sign_in_with(request, code, account, opens, refused, lambda: _to_clean_url(request))
    session = _session(request)
    if session is None or not opens(session.principal):
        return refused()
    return session


async def _household_page(request: web.Request) -> web.Response:
    household_id = request.match_info["household_id"]

    def refused() -> web.Response:
        return _sign_in(request, "Enter the access code for this page.")

    if not HOUSEHOLD_ID.match(household_id):
        return refused()
    session = _page_session(request, f"household:{household_id}", lambda p: p.opens_household(household_id), refused)
    if not isinstance(session, Session):
        return session
    settings = request.app[SETTINGS]
    view = request.app[STORE].household(household_id) or {"household_id": household_id}
    html = render_household(
        view,
        timezone=settings.preprocess.timezone,
        currency=settings.tariff.currency,
        refresh_s=settings.web.refresh_s,
        controls=signout_form(_csrf(request, session), household_id),
    )
    return _html(html)


def _api_principal(request: web.Request, account: str) -> Principal | None | float:
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return _check_code(request, bearer[7:], account)
    session = _session(request)
    return session.principal if session is not None else None


async def _household_json(request: web.Request) -> web.Response:
    household_id = request.match_info["household_id"]
    principal = _api_principal(request, f"household:{household_id}") if HOUSEHOLD_ID.match(household_id) else None
    if isinstance(principal, float):
        return _locked_out(principal, api=True)
    if principal is None or not principal.opens_household(household_id):
        return web.json_response({"error": "forbidden"}, status=403)
    return web.json_response(request.app[STORE].household(household_id) or {"household_id": household_id})


def _operator_session(request: web.Request) -> Session | web.Response:
    """The session that opens the operator's pages, or the operator's sign-in."""
    return _page_session(
        request,
        "operator",
        lambda p: p.opens_operator_view,
        lambda: _sign_in(request, "Enter the operator access code.", operator=True),
    )


async def _operator_page(request: web.Request) -> web.Response:
    session = _operator_session(request)
    if not isinstance(session, Session):
        return session
    settings, csrf = request.app[SETTINGS], _csrf(request, session)
    who = f"{session.principal.subject} ({session.principal.role})"
    html = render_operator(
        request.app[STORE].overview(),
        timezone=settings.preprocess.timezone,
        refresh_s=settings.web.refresh_s,
        controls=signout_form(csrf, who),
        tools=revoke_card(csrf) if session.principal.may_revoke else "",
    )
    return _html(html)


async def _history_page(request: web.Request) -> web.Response:
    """The history view: DuckDB over the Parquet history, in a worker thread (a large history takes a while)."""
    import asyncio

    from gridflow.web.history_view import history_view, render_history

    session = _operator_session(request)
    if not isinstance(session, Session):
        return session
    settings = request.app[SETTINGS]
    view = await asyncio.get_running_loop().run_in_executor(None, history_view, settings)
    who = f"{session.principal.subject} ({session.principal.role})"
    html = render_history(
        view,
        timezone=settings.preprocess.timezone,
        refresh_s=0,
        controls=signout_form(_csrf(request, session), who),
    )
    return _html(html)


async def _operator_json(request: web.Request) -> web.Response:
    principal = _api_principal(request, "operator")
    if isinstance(principal, float):
        return _locked_out(principal, api=True)
    if principal is None or not principal.opens_operator_view:
        return web.json_response({"error": "forbidden"}, status=403)
    return web.json_response(request.app[STORE].overview())


async def _login(request: web.Request) -> web.Response:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    form = await _form_with_csrf(request, request.app[CREDENTIALS].mac("login", nonce) if nonce else "")
    if form is None:
        return _sign_in(request, "The sign-in form expired; please enter your code again.")
    operator = form.get("role") == "operator"
    household_id = form.get("household_id", "").strip()
    if not operator and not HOUSEHOLD_ID.match(household_id):
        return _sign_in(request, "Enter your household number and access code.")
    return _sign_in_with(
        request,
        form.get("code", ""),
        "operator" if operator else f"household:{household_id}",
        lambda p: p.opens_operator_view if operator else p.opens_household(household_id),
        lambda: _sign_in(request, "That access code does not open this page.", operator=operator),
        lambda: _redirect("/operator" if operator else f"/household/{household_id}"),
    )


async def _logout(request: web.Request) -> web.Response:
    session = _session(request)
    if session is not None:
        if await _form_with_csrf(request, _csrf(request, session)) is None:
            return _html(notice_page("Refused", "This sign-out form is not from your page.", back="/"), 403)
        request.app[CREDENTIALS].close_session(session.digest)
    response = _redirect("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def _revoke(request: web.Request) -> web.Response:
    session = _session(request)
    if session is None or not session.principal.may_revoke:
        return _html(notice_page("Refused", "Revoking access needs an operator account.", back="/operator"), 403)
    form = await _form_with_csrf(request, _csrf(request, session))
    if form is None:
        return _html(notice_page("Refused", "This form is not from your operator view.", back="/operator"), 403)
    household_id = form.get("household_id", "").strip()
    if not HOUSEHOLD_ID.match(household_id):
        return _html(notice_page("Not revoked", "That is not a household number.", back="/operator"), 400)
    revoked = request.app[CREDENTIALS].revoke(household=household_id)
    log.info("operator %s revoked %d access code(s) of household %s", session.principal.subject, revoked, household_id)
    return _html(
        notice_page(
            "Access revoked", f"Revoked {revoked} access code(s) of household {household_id}.", back="/operator"
        )
    )


async def _health(request: web.Request) -> web.Response:
    store, feed = request.app[STORE], request.app[FEED]
    return web.json_response(
        {
            "status": "ok",
            "accepted": store.accepted,
            "rejected": store.rejected,
            "consumed": getattr(feed, "consumed", None),
            "undecodable": getattr(feed, "undecodable", None),
            "misaddressed": getattr(feed, "misaddressed", None),
            "feed_alive": feed.is_alive() if feed is not None else None,
            "last_record_ms": getattr(feed, "last_record_ms", None),
        }
    )


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if not settings.web.https:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.web.tls_certfile, settings.web.tls_keyfile)
    return context


async def serve(
    settings: Settings,
    credentials: Credentials,
    ready: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Feed a store from Kafka and serve the pages until ``stop`` is set (or SIGINT/SIGTERM)."""
    store = PageStore(
        settings.preprocess.timezone,
        alerts_per_household=settings.web.alerts_per_household,
        recent_alerts=settings.web.recent_alerts,
    )
    feed = TopicFeed(settings, store)
    feed.start()
    # keepalive_timeout also bounds how long a connection may take to send a whole request (aiohttp closes a
    # connection still waiting for one then): a slow-loris client dripping header bytes is cut off
    runner = web.AppRunner(
        build_app(settings, store, credentials, feed), access_log=None, keepalive_timeout=settings.web.header_timeout_s
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.web.host, settings.web.port, ssl_context=_tls(settings)).start()
        host, port = runner.addresses[0][:2]
        scheme = "https" if settings.web.https else "http"
        ready(f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}")
        if stop is None:
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, feed.stop)
        credentials.close()
