"""The web server (aiohttp): household pages, the operator view, their JSON and a health check.

Routes::

    GET  /                                  sign-in form
    POST /login                             form (role, household_id, token) -> cookie, redirect
    GET  /logout                            forget the cookies
    GET  /household/<id>[?token=...]        the household page      (household token)
    GET  /api/household/<id>[?token=...]    the same data as JSON   (household token)
    GET  /operator[?token=...]              the operator view       (operator token)
    GET  /api/operator[?token=...]          the same data as JSON   (operator token)
    GET  /healthz                           liveness and feed counters (no data)

A token comes from the ``token`` query parameter, an ``Authorization: Bearer`` header or the cookie set
by a successful sign-in or token link. A missing or wrong token gets 403 and the sign-in form, never
data: a household token opens neither another household nor the operator view.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from aiohttp import web

from gridflow.settings import Settings
from gridflow.web.auth import PageTokens
from gridflow.web.feed import TopicFeed
from gridflow.web.household import render_household
from gridflow.web.layout import login_page
from gridflow.web.operator import render_operator
from gridflow.web.store import HOUSEHOLD_ID, PageStore

HOUSEHOLD_COOKIE, OPERATOR_COOKIE = "gridflow_household", "gridflow_operator"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # token links must not leak to other sites
    "Cache-Control": "no-store",
}
STORE = web.AppKey("store", PageStore)
TOKENS = web.AppKey("tokens", PageTokens)
SETTINGS = web.AppKey("settings", Settings)
FEED: web.AppKey[TopicFeed | None] = web.AppKey("feed")  # None when the app serves without a Kafka feed


@web.middleware
async def _headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405 answers
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def build_app(
    settings: Settings, store: PageStore, tokens: PageTokens, feed: TopicFeed | None = None
) -> web.Application:
    app = web.Application(middlewares=[_headers], client_max_size=16 * 1024)
    app[STORE], app[TOKENS], app[SETTINGS], app[FEED] = store, tokens, settings, feed
    app.add_routes(
        [
            web.get("/", _index),
            web.post("/login", _login),
            web.get("/logout", _logout),
            web.get("/household/{household_id}", _household_page),
            web.get("/api/household/{household_id}", _household_json),
            web.get("/operator", _operator_page),
            web.get("/api/operator", _operator_json),
            web.get("/healthz", _health),
        ]
    )
    return app


def _presented(request: web.Request, cookie: str) -> str | None:
    bearer = request.headers.get("Authorization", "")
    return (
        request.query.get("token")
        or (bearer[7:] if bearer.startswith("Bearer ") else None)
        or request.cookies.get(cookie)
    )


def _forbidden(operator: bool = False) -> web.Response:
    text = login_page(
        "Enter the access code for this page." if not operator else "Enter the operator access code.", operator=operator
    )
    return web.Response(status=403, text=text, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _remember(request: web.Request, response: web.StreamResponse, cookie: str, token: str) -> None:
    response.set_cookie(
        cookie,
        token,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.app[SETTINGS].web.cookie_secure,
        max_age=180 * 86_400,
    )


def _household_allowed(request: web.Request) -> str | None:
    household_id = request.match_info["household_id"]
    token = _presented(request, HOUSEHOLD_COOKIE)
    if HOUSEHOLD_ID.match(household_id) and request.app[TOKENS].opens_household(household_id, token):
        return token
    return None


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        text=login_page("Sign in with your household number and access code."), content_type="text/html"
    )


async def _household_page(request: web.Request) -> web.Response:
    token = _household_allowed(request)
    if token is None:
        return _forbidden()
    settings = request.app[SETTINGS]
    household_id = request.match_info["household_id"]
    view = request.app[STORE].household(household_id) or {"household_id": household_id}
    html = render_household(
        view, timezone=settings.preprocess.timezone, currency=settings.tariff.currency, refresh_s=settings.web.refresh_s
    )
    response = web.Response(text=html, content_type="text/html")
    _remember(request, response, HOUSEHOLD_COOKIE, token)
    return response


async def _household_json(request: web.Request) -> web.Response:
    if _household_allowed(request) is None:
        return web.json_response({"error": "forbidden"}, status=403)
    household_id = request.match_info["household_id"]
    return web.json_response(request.app[STORE].household(household_id) or {"household_id": household_id})


def _operator_allowed(request: web.Request) -> str | None:
    token = _presented(request, OPERATOR_COOKIE)
    return token if request.app[TOKENS].opens_operator(token) else None


async def _operator_page(request: web.Request) -> web.Response:
    token = _operator_allowed(request)
    if token is None:
        return _forbidden(operator=True)
    settings = request.app[SETTINGS]
    html = render_operator(
        request.app[STORE].overview(), timezone=settings.preprocess.timezone, refresh_s=settings.web.refresh_s
    )
    response = web.Response(text=html, content_type="text/html")
    _remember(request, response, OPERATOR_COOKIE, token)
    return response


async def _operator_json(request: web.Request) -> web.Response:
    if _operator_allowed(request) is None:
        return web.json_response({"error": "forbidden"}, status=403)
    return web.json_response(request.app[STORE].overview())


async def _login(request: web.Request) -> web.Response:
    form = await request.post()
    token, role = str(form.get("token", "")).strip(), form.get("role")
    tokens = request.app[TOKENS]
    if role == "operator":
        if not tokens.opens_operator(token):
            return _forbidden(operator=True)
        response = _redirect("/operator")
        _remember(request, response, OPERATOR_COOKIE, token)
        return response
    household_id = str(form.get("household_id", "")).strip()
    if not HOUSEHOLD_ID.match(household_id) or not tokens.opens_household(household_id, token):
        return _forbidden()
    response = _redirect(f"/household/{household_id}")
    _remember(request, response, HOUSEHOLD_COOKIE, token)
    return response


async def _logout(request: web.Request) -> web.Response:
    response = _redirect("/")
    for cookie in (HOUSEHOLD_COOKIE, OPERATOR_COOKIE):
        response.del_cookie(cookie, path="/")
    return response


async def _health(request: web.Request) -> web.Response:
    store, feed = request.app[STORE], request.app[FEED]
    return web.json_response(
        {
            "status": "ok",
            "accepted": store.accepted,
            "rejected": store.rejected,
            "consumed": getattr(feed, "consumed", None),
            "feed_alive": feed.is_alive() if feed is not None else None,
            "last_record_ms": getattr(feed, "last_record_ms", None),
        }
    )


async def serve(
    settings: Settings, tokens: PageTokens, ready: Callable[[str], None] = print, stop: asyncio.Event | None = None
) -> None:
    """Feed a store from Kafka and serve the pages until ``stop`` is set (or SIGINT/SIGTERM)."""
    store = PageStore(
        settings.preprocess.timezone,
        alerts_per_household=settings.web.alerts_per_household,
        recent_alerts=settings.web.recent_alerts,
    )
    feed = TopicFeed(settings, store)
    feed.start()
    runner = web.AppRunner(build_app(settings, store, tokens, feed), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.web.host, settings.web.port).start()
        host, port = runner.addresses[0][:2]
        ready(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        if stop is None:
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, feed.stop)
