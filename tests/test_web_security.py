"""The abuse suite of the household and operator pages: the real ``gridflow page serve`` fed from the real
broker, attacked over real sockets. Each test names the defence it checks and fails without it.

Attackers come from their own loopback addresses (127.0.0.N) so the per-address sign-in limit of one
test never decides another's."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
import urllib.parse

import pytest

from gridflow.web.auth import Credentials
from gridflow.web.server import SECURITY_HEADERS, build_app
from gridflow.web.store import PageStore

from conftest import unique_topics
from page_server import page_server

pytestmark = pytest.mark.integration
A, B, C, D = "hh-sec-a", "hh-sec-b", "hh-sec-c", "hh-sec-d"
LOCKOUT_S = 5
HEADER_TIMEOUT_S = 2.0


def advice(household: str, text: str) -> dict:
    return {
        "v": 1,
        "household_id": household,
        "kind": "shift",
        "appliance": "dishwasher",
        "text": text,
        "created_ms": int(time.time() * 1000),
    }


SECRET_OF_B = "B-only: start the heat pump at 03:10"
MISADDRESSED = "misaddressed: shown to nobody"


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("web-security")
    settings = unique_topics(stack.settings).with_overrides(
        f"stack.run_dir={run_dir}",
        "web.port=0",
        "web.refresh_s=0",
        "web.login_max_failures=3",
        "web.login_ip_max_failures=6",
        "web.login_window_s=60",
        f"web.lockout_s={LOCKOUT_S}",
        f"web.header_timeout_s={HEADER_TIMEOUT_S}",
    )
    recommendations = [
        advice(A, "A: run the washing machine at night"),
        advice(B, SECRET_OF_B),
        advice(A, MISADDRESSED),  # keyed to B below: it claims to be A's but travels on B's key
        "[" * 5000 + "]" * 5000,  # nested deeper than any decoder should follow
        '{"household_id": "' + "x" * 200_000 + '"}',  # oversized
    ]
    keys = {"recommendations": [A, B, B, A, None]}
    with page_server(settings, run_dir, {"recommendations": recommendations}, keys) as server:
        yield server


class Browser:
    """A minimal cookie-keeping HTTP client on its own source address; redirects are not followed."""

    def __init__(self, url: str, source: str = "127.0.0.1"):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.source = parts.hostname, parts.port, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None, body=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10, source_address=(self.source, 0))
        send = dict(headers or {})
        if self.cookies:
            send["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urllib.parse.urlencode(form)
            send["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=send)
        answer = connection.getresponse()
        text = answer.read().decode(errors="replace")
        received = {k.lower(): v for k, v in answer.getheaders()}
        received["set-cookie"] = "\n".join(v for k, v in answer.getheaders() if k.lower() == "set-cookie")
        for name, value in answer.getheaders():
            if name.lower() == "set-cookie":
                cookie, _, attributes = value.partition(";")
                key, _, cookie_value = cookie.partition("=")
                if "max-age=0" in attributes.lower() or "expires=thu, 01 jan 1970" in attributes.lower():
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = cookie_value.strip()
        connection.close()
        return answer.status, received, text

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def csrf(self, path: str = "/") -> str:
        status, _, html = self.get(path)
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert match, (status, html[:300])
        return match.group(1)

    def sign_in(self, household: str, code: str):
        return self.request(
            "POST", "/login", form={"role": "household", "household_id": household, "code": code, "csrf": self.csrf()}
        )

    def sign_in_operator(self, code: str):
        return self.request("POST", "/login", form={"role": "operator", "code": code, "csrf": self.csrf()})


def signed_in(site, household: str, code: str, source: str = "127.0.0.1") -> Browser:
    browser = Browser(site.url, source)
    status, headers, _ = browser.sign_in(household, code)
    assert status == 303 and headers["location"] == f"/household/{household}", (status, headers)
    return browser


def test_every_page_and_api_path_refuses_other_households_and_look_alike_ids(site):
    """IDOR: a household's session or code opens its own page and JSON only."""
    code_a, code_b = site.issue(A), site.issue(B)
    a = signed_in(site, A, code_a)
    assert a.get(f"/household/{A}")[0] == 200
    bearer = {"Authorization": f"Bearer {code_a}"}
    refused = [
        ("GET", f"/household/{B}", {}),
        ("GET", f"/api/household/{B}", {}),
        ("GET", f"/api/household/{B}", bearer),
        ("GET", "/operator", {}),
        ("GET", "/api/operator", {}),
        ("GET", "/api/operator", bearer),
        ("GET", f"/household/{B}?code={urllib.parse.quote(code_a)}", {}),
        ("GET", f"/household/{A}%2F..%2F{B}", {}),
        ("GET", f"/household/{B.upper()}", {}),
        ("GET", "/household/hh-sec-b%00", {}),
        ("GET", "/household/hh-sec-%D0%B0", {}),  # a Cyrillic 'а' for the Latin 'a'
        ("GET", f"/household/{A}/../{B}", {}),
        ("GET", "/household/..", {}),
    ]
    for method, path, headers in refused:
        status, _, body = a.request(method, path, headers=headers)
        assert status in (403, 404), (path, status)
        assert SECRET_OF_B not in body and "heat pump" not in body, path
    status, _, body = a.request("POST", "/operator/revoke", form={"household_id": B, "csrf": "0" * 32})
    assert status == 403
    b = signed_in(site, B, code_b, "127.0.0.9")
    assert b.get(f"/household/{B}")[0] == 200, "B must be untouched by A's attempts"
    status, _, body = b.get(f"/api/household/{B}")
    assert status == 200 and SECRET_OF_B in body


def test_a_record_keyed_to_another_household_and_undecodable_records_reach_no_page(site):
    """Topics: a record whose key and household_id disagree never reaches either household."""
    a = signed_in(site, A, site.issue(A), "127.0.0.10")
    b = signed_in(site, B, site.issue(B), "127.0.0.10")
    pages = a.get(f"/household/{A}")[2] + b.get(f"/household/{B}")[2]
    assert "A: run the washing machine at night" in pages and SECRET_OF_B in pages
    assert MISADDRESSED not in pages
    health = site.health()
    assert health["misaddressed"] == 1 and health["undecodable"] == 1 and health["feed_alive"] is True
    assert health["rejected"] >= 1, "the oversized id must be rejected by the store"


def test_a_code_link_signs_in_once_and_redirects_to_a_url_without_the_code(site):
    code = site.issue(A)
    browser = Browser(site.url, "127.0.0.11")
    status, headers, _ = browser.get(f"/household/{A}?code={urllib.parse.quote(code)}&lang=en")
    assert status == 303 and headers["location"] == f"/household/{A}?lang=en"
    cookie = next(line for line in headers["set-cookie"].splitlines() if line.startswith("gridflow_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and code.replace("-", "") not in cookie
    assert browser.get(headers["location"])[0] == 200, "the session alone must open the page"
    page = browser.get(f"/household/{A}")[2]
    assert code not in page and code.replace("-", "") not in page


def test_a_revoked_code_and_its_sessions_stop_at_the_next_request_and_others_keep_working(site):
    code_a, code_b = site.issue(A), site.issue(B)
    a, b = signed_in(site, A, code_a, "127.0.0.12"), signed_in(site, B, code_b, "127.0.0.12")
    bearer = {"Authorization": f"Bearer {code_a}"}
    assert a.get(f"/household/{A}")[0] == 200 and a.get(f"/api/household/{A}", headers=bearer)[0] == 200
    site.cli("page", "token", "revoke", A)
    assert a.get(f"/household/{A}")[0] == 403, "the revoked code's session must end at once"
    assert Browser(site.url, "127.0.0.12").get(f"/api/household/{A}", headers=bearer)[0] == 403
    assert Browser(site.url, "127.0.0.12").sign_in(A, code_a)[0] == 403, "a revoked code must not sign in again"
    assert b.get(f"/household/{B}")[0] == 200, "another household must not be touched"
    new_a = site.cli("page", "token", "rotate", A).stdout.strip()
    assert signed_in(site, A, new_a, "127.0.0.12").get(f"/household/{A}")[0] == 200


def test_guessing_codes_locks_the_account_and_then_the_address_out(site):
    """Sign-in rate limit with lock-out, per account (3 failures) and per address (6)."""
    code_c, code_d = site.issue(C), site.issue(D)
    guesser = Browser(site.url, "127.0.0.20")
    wrong = "0000-0000-0000-0000-0000"
    assert [guesser.sign_in(C, wrong)[0] for _ in range(3)] == [403, 403, 403]
    status, headers, _ = guesser.sign_in(C, code_c)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= LOCKOUT_S, "a locked account refuses even its code"
    assert guesser.sign_in(D, code_d)[0] == 303, "other accounts are not locked for that address"
    assert Browser(site.url, "127.0.0.21").sign_in(C, code_c)[0] == 303, "a guesser cannot lock the household out"
    bearer_guess = Browser(site.url, "127.0.0.22")
    answers = [
        bearer_guess.get(f"/api/household/{D}", headers={"Authorization": f"Bearer {wrong}"})[0] for _ in range(4)
    ]
    assert answers == [403, 403, 403, 429], "guessing through the API counts too"
    time.sleep(LOCKOUT_S + 0.5)
    assert Browser(site.url, "127.0.0.23").sign_in(C, code_c)[0] == 303, "the lock-out ends"
    sprayer = Browser(site.url, "127.0.0.24")  # two guesses each at many households: under the account limit
    for n in range(3):
        assert [sprayer.sign_in(f"hh-spray-{n}", wrong)[0] for _ in range(2)] == [403, 403]
    assert sprayer.sign_in(D, code_d)[0] == 429, "six failures lock the address, whatever accounts it tried"
    assert Browser(site.url, "127.0.0.25").sign_in(D, code_d)[0] == 303


def test_forms_without_their_csrf_token_or_from_another_site_change_nothing(site):
    code_a = site.issue(A)
    stranger = Browser(site.url, "127.0.0.30")
    status, headers, _ = stranger.request(
        "POST", "/login", form={"role": "household", "household_id": A, "code": code_a}
    )
    assert status == 403 and "gridflow_session" not in headers.get("set-cookie", "")
    other = Browser(site.url, "127.0.0.30")
    foreign_token = other.csrf()  # a valid token, but bound to another browser's pre-session cookie
    stranger.csrf()
    form = {"role": "household", "household_id": A, "code": code_a, "csrf": foreign_token}
    assert stranger.request("POST", "/login", form=form)[0] == 403
    a = signed_in(site, A, code_a, "127.0.0.30")
    assert a.request("POST", "/logout", form={"csrf": "0" * 32})[0] == 403
    assert a.get(f"/household/{A}")[0] == 200, "a forged sign-out must not end the session"
    operator = Browser(site.url, "127.0.0.31")
    assert operator.sign_in_operator(site.issue("--operator", "ops-admin", "--role", "operator"))[0] == 303
    page = operator.get("/operator")[2]
    token = re.search(r'action="/operator/revoke"><input type="hidden" name="csrf" value="([0-9a-f]+)"', page).group(1)
    assert operator.request("POST", "/operator/revoke", form={"household_id": A})[0] == 403
    evil = {"Origin": "http://evil.example"}
    assert operator.request("POST", "/operator/revoke", form={"household_id": A, "csrf": token}, headers=evil)[0] == 403
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert (
        operator.request("POST", "/operator/revoke", form={"household_id": A, "csrf": token}, headers=cross)[0] == 403
    )
    assert a.get(f"/household/{A}")[0] == 200, "no forged revocation may take effect"
    viewer = Browser(site.url, "127.0.0.32")
    assert viewer.sign_in_operator(site.issue("--operator", "ops-viewer"))[0] == 303
    viewer_page = viewer.get("/operator")[2]
    assert "/operator/revoke" not in viewer_page
    assert (
        viewer.request("POST", "/operator/revoke", form={"household_id": A, "csrf": viewer.csrf("/operator")})[0] == 403
    )
    assert a.get(f"/household/{A}")[0] == 200, "a viewer may not revoke"
    status, _, body = operator.request("POST", "/operator/revoke", form={"household_id": A, "csrf": token})
    assert status == 200 and "Revoked" in body
    assert a.get(f"/household/{A}")[0] == 403, "the operator's revocation ends the household's session"
    assert a.request("POST", "/logout", form={"csrf": "x"})[0] == 303  # no session left: signing out is harmless


def test_every_answer_carries_the_security_headers_and_no_internals(site):
    browser = Browser(site.url, "127.0.0.40")
    answers = {
        "sign-in": browser.get("/"),
        "refused": browser.get(f"/household/{B}"),
        "not found": browser.get("/nothing-here"),
        "wrong method": browser.get("/logout"),
        "too large": browser.request(
            "POST", "/login", body="x=" + "y" * 64 * 1024, headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
        "health": browser.get("/healthz"),
    }
    assert answers["not found"][0] == 404 and answers["wrong method"][0] == 405 and answers["too large"][0] == 413
    for name, (status, headers, body) in answers.items():
        for header, value in SECURITY_HEADERS.items():
            assert headers.get(header.lower()) == value, (name, header)
        assert "Traceback" not in body and "aiohttp" not in body.lower(), name


def test_oversized_and_malformed_requests_are_refused_and_the_server_keeps_serving(site):
    browser = Browser(site.url, "127.0.0.41")
    status, _, _ = browser.get("/", headers={"X-Big": "y" * 20_000})
    assert status in (400, 431)
    try:
        status = browser.get("/", headers={f"X-{i}": "1" for i in range(300)})[0]  # more header lines than allowed
    except (http.client.RemoteDisconnected, ConnectionError):
        status = "disconnected"
    assert status in (400, 431, "disconnected")
    raw = socket.create_connection((browser.host, browser.port), timeout=5)
    raw.sendall(b"GET /\x00\xff HTTP/1.1\r\nHost: x\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 400 ", raw.recv(100))
    raw.close()
    assert browser.get("/healthz")[0] == 200


def test_a_slow_loris_connection_is_cut_off_while_others_are_served(site):
    """Connections that drip a request are closed ``web.header_timeout_s`` after connecting."""
    host, port = urllib.parse.urlsplit(site.url).hostname, urllib.parse.urlsplit(site.url).port
    drips = [socket.create_connection((host, port), timeout=10) for _ in range(20)]
    started = time.monotonic()
    closed_after: dict[int, float] = {}

    def drip(n: int, sock: socket.socket) -> None:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() - started < HEADER_TIMEOUT_S + 8:
                sock.sendall(b"X-a: b\r\n")
                time.sleep(0.25)
            # still open: no verdict recorded
        except OSError:
            closed_after[n] = time.monotonic() - started

    threads = [threading.Thread(target=drip, args=(n, s)) for n, s in enumerate(drips)]
    for thread in threads:
        thread.start()
    served = [Browser(site.url, "127.0.0.42").get("/healthz")[0] for _ in range(5)]
    for thread in threads:
        thread.join()
    for sock in drips:
        sock.close()
    assert served == [200] * 5, "other clients must be served during the attack"
    assert len(closed_after) == len(drips), f"only {len(closed_after)} of {len(drips)} slow connections were cut off"
    assert max(closed_after.values()) < HEADER_TIMEOUT_S + 3, closed_after


def test_an_unexpected_error_answers_with_an_incident_number_and_logs_the_details(tmp_path, base_settings, caplog):
    class BrokenStore(PageStore):
        def household(self, household_id):
            raise RuntimeError("store exploded at /srv/secret/path")

    settings = base_settings.with_overrides(f"stack.run_dir={tmp_path}")
    credentials = Credentials(tmp_path / "credentials.db", b"0123456789abcdef")
    code = credentials.issue(A)[1]

    async def scenario() -> tuple[int, str, dict]:
        from aiohttp import web

        runner = web.AppRunner(build_app(settings, BrokenStore("UTC"), credentials))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        try:
            browser = Browser(f"http://127.0.0.1:{port}")
            first = await loop.run_in_executor(None, browser.get, f"/household/{A}?code={code}")
            assert first[0] == 303
            status, headers, body = await loop.run_in_executor(None, browser.get, f"/household/{A}")
            return status, body, headers
        finally:
            await runner.cleanup()

    with caplog.at_level("ERROR", logger="gridflow.web"):
        status, body, headers = asyncio.run(scenario())
    credentials.close()
    incident = re.search(r"incident ([0-9a-f]{8})", body)
    assert status == 500 and incident and headers["x-frame-options"] == "DENY"
    assert "exploded" not in body and "/srv/secret" not in body and "Traceback" not in body
    assert any(incident.group(1) in r.getMessage() and r.exc_info for r in caplog.records), "the log must have it"


def test_healthz_reports_counters_only(site):
    status, _, body = Browser(site.url, "127.0.0.43").get("/healthz")
    assert status == 200 and set(json.loads(body)) == {
        "status",
        "accepted",
        "rejected",
        "consumed",
        "undecodable",
        "misaddressed",
        "feed_alive",
        "last_record_ms",
    }


def test_pages_served_over_https_send_secure_cookies_and_hsts_and_refuse_plain_http(stack, tmp_path):
    from gridflow.stack.tls import ensure_tls

    tls = ensure_tls(tmp_path / "tls", "127.0.0.1")
    settings = unique_topics(stack.settings).with_overrides(
        f"stack.run_dir={tmp_path}",
        "web.port=0",
        "web.refresh_s=0",
        f"web.tls_certfile={tls.server_cert}",
        f"web.tls_keyfile={tls.server_key}",
    )
    records = {"recommendations": [advice(A, "A: over HTTPS")]}
    with page_server(settings, tmp_path, records, ca_file=tls.ca_cert) as server:
        assert server.url.startswith("https://")
        parts = urllib.parse.urlsplit(server.url)
        code = server.issue(A)
        secure = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=server.tls)
        secure.request("GET", f"/household/{A}?code={urllib.parse.quote(code)}")
        answer = secure.getresponse()
        answer.read()
        cookie = answer.getheader("Set-Cookie")
        assert answer.status == 303 and "Secure" in cookie and "gridflow_session=" in cookie
        assert answer.getheader("Strict-Transport-Security") == "max-age=31536000"
        secure.close()
        plain = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", f"/household/{A}?code={urllib.parse.quote(code)}")
            plain.getresponse().read()


def test_a_code_link_followed_from_another_site_moves_on_by_itself_so_the_strict_cookie_is_sent(site):
    """From a mail or another site the redirect would still count as cross-site and a browser would not
    send the new SameSite=Strict cookie with it: that case gets a page that moves on same-site."""
    code = site.issue(A)
    browser = Browser(site.url, "127.0.0.12")
    status, headers, body = browser.get(
        f"/household/{A}?code={urllib.parse.quote(code)}", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 200 and f'content="0;url=/household/{A}"' in body and code not in body
    assert "gridflow_session=" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert browser.get(f"/household/{A}", headers={"Sec-Fetch-Site": "same-origin"})[0] == 200
