"""The household and operator pages end to end: records on the real broker -> ``gridflow page serve`` ->
headless Chromium (Debian ``chromium``), with screenshots checked at phone and desktop sizes."""

from __future__ import annotations

import http.cookiejar
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from gridflow.scheduling.service import plan_day
from gridflow.web import fmt
from gridflow.web.household import render_household
from gridflow.web.layout import ACCENT, TYPICAL
from gridflow.web.operator import render_operator
from gridflow.web.store import KINDS, PageStore

from conftest import unique_topics
from page_server import page_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "chromium"  # Debian chromium; scripts/setup.sh installs it
HEADLESS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]
DAY_MS = 86_400_000
DAY = (int(time.time() * 1000) // DAY_MS) * DAY_MS  # today, UTC midnight
A, B = "hh-alpha", "hh-bravo"
EVENING = [0.6] * 7 + [1.0] * 10 + [2.2] * 4 + [1.0] * 3
MORNING = [0.6] * 6 + [2.4] * 3 + [0.8] * 15


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def records(settings) -> dict[str, list[dict]]:
    """Two households with different shapes, clusters, plans, advice and alerts."""

    def features(household, shape, base_w):
        return [
            {
                "household_id": household,
                "meter_id": f"m-{household}",
                "window_start_ms": DAY + m * 60_000,
                "window_end_ms": DAY + (m + 1) * 60_000,
                "n_readings": 6,
                "mean_w": base_w * shape[m // 60],
                "peak_w": base_w * shape[m // 60] * 1.2,
                "energy_wh": base_w * shape[m // 60] / 60,
                "emitted_ms": DAY + (m + 1) * 60_000,
            }
            for m in range(0, 1440, 2)
        ]

    forecast = {
        "start_ts_ms": DAY + 12 * 3_600_000,
        "slot_minutes": 60,
        "slots": 24,
        "currency": "EUR",
        "model": "linear",
        "price_per_kwh": [0.27] * 5 + [0.38] * 4 + [0.27] * 3 + [0.12] * 7 + [0.27] * 5,
    }

    def appliance(name, power_w, start_h):
        return {
            "name": name,
            "power_w": power_w,
            "duration_minutes": 120,
            "horizon_start_minute": 0,
            "alpha_minute": start_h * 60,
            "beta_minute": (start_h + 14) * 60,
            "comfort_margin_minutes": 0,
        }

    plan_settings = settings.with_overrides("scheduler.slot_minutes=60")
    schedules = [
        plan_day(A, [appliance("washing_machine", 2000.0, 18)], forecast, plan_settings),
        plan_day(B, [appliance("dishwasher", 1200.0, 19), appliance("dryer", 2500.0, 20)], forecast, plan_settings),
    ]
    return {
        "features": features(A, EVENING, 900.0) + features(B, MORNING, 400.0),
        "profiles": [
            {
                "household_id": h,
                "meter_id": f"m-{h}",
                "day": "2026-01-01",
                "day_start_ms": DAY - DAY_MS,
                "slots": 24,
                "mean_w": w,
                "energy_kwh": w * 0.024,
            }
            for h, w in ((A, 1000.0), (B, 450.0))
        ],
        "centroids": [
            {"cluster": 0, "profile_norm": [v / 1.1 for v in EVENING], "size": 37, "ts_ms": DAY},
            {"cluster": 1, "profile_norm": [v / 0.95 for v in MORNING], "size": 21, "ts_ms": DAY},
        ],
        "assignments": [
            {"household_id": A, "cluster": 0, "distance": 0.12, "ts_ms": DAY},
            {"household_id": B, "cluster": 1, "distance": 0.3, "ts_ms": DAY},
        ],
        "schedules": schedules,
        "recommendations": [
            {
                "v": 1,
                "household_id": A,
                "kind": "shift",
                "appliance": "washing_machine",
                "text": "Run the washing machine after 00:00 instead of at 18:00.",
                "from_ts_ms": DAY + DAY_MS,
                "to_ts_ms": DAY + DAY_MS + 7_200_000,
                "saving_per_day": 0.37,
                "currency": "EUR",
                "created_ms": DAY,
            },
            {
                "v": 1,
                "household_id": B,
                "kind": "shift",
                "appliance": "dishwasher",
                "text": "Start the dishwasher at night instead of after dinner.",
                "from_ts_ms": DAY + DAY_MS,
                "to_ts_ms": DAY + DAY_MS + 3_600_000,
                "saving_per_day": 0.91,
                "currency": "EUR",
                "created_ms": DAY,
            },
        ],
        "alerts": [
            {
                "household_id": A,
                "type": "sustained_high_load",
                "severity": "high",
                "message": "Unusually high load at night: 3.2 kW for 45 minutes.",
                "evidence": {"peak_w": 3200.0, "minutes": 45},
                "ts_ms": DAY + 3_600_000,
            },
            {
                "household_id": B,
                "type": "meter_gap",
                "severity": "medium",
                "suggested_action": "Check the meter's Wi-Fi connection near the garage.",
                "ts_ms": DAY,
            },
        ],
    }


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    """``gridflow page serve`` on a free port, fed with both households' records from the broker."""
    run_dir = tmp_path_factory.mktemp("web-run")
    settings = unique_topics(stack.settings).with_overrides(f"stack.run_dir={run_dir}", "web.port=0", "web.refresh_s=0")
    data = records(settings)
    with page_server(settings, run_dir, data) as server:
        assert server.health()["accepted"] == sum(len(v) for v in data.values())
        tokens = {A: server.issue(A), B: server.issue(B), "operator": server.issue("--operator", "ops")}
        yield {"url": server.url, "data": data, "tokens": tokens, "settings": settings}


def _get(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str, dict]:
    """One request as a fresh browser would make it: redirects followed, with the cookies they set."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers or {}), timeout=10) as response:
            status, body, headers = response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, body, headers = error.code, error.read().decode(), dict(error.headers)
    if headers.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(body), headers
    return status, body, headers


def browse(url: str, *args: str, size=(1280, 800)) -> str:
    """The DOM Chromium ends up with after loading ``url``."""
    done = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--window-size={size[0]},{size[1]}", *args, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(url: str, path: Path, size) -> Image.Image:
    done = subprocess.run(
        [CHROMIUM, *HEADLESS, "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={path}", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and path.exists(), done.stderr[-2000:]
    return Image.open(path).convert("RGB")


def share_of(image: Image.Image, colour: str, tolerance: int = 12) -> float:
    """Share of pixels within ``tolerance`` of ``colour`` on every channel."""
    pixels = np.asarray(image, dtype=np.int16)
    return float((np.abs(pixels - np.array(_rgb(colour))) <= tolerance).all(axis=2).mean())


def page_url(site, household: str, code: str | None) -> str:
    query = f"?{urllib.parse.urlencode({'code': code})}" if code else ""
    return f"{site['url']}/household/{household}{query}"


def b_markers(site) -> list[str]:
    """Text only household B's page may show."""
    b_schedule = site["data"]["schedules"][1]
    return [
        B,
        "dishwasher",
        "Start the dishwasher",
        "Wi-Fi",
        "€0.91",
        fmt.money(b_schedule["savings"], "EUR"),
        "usage group 1",
    ]


def test_household_sees_its_own_numbers_and_none_of_another_households(site):
    dom = browse(page_url(site, A, site["tokens"][A]))
    a_schedule = site["data"]["schedules"][0]
    assert a_schedule["savings"] > 0
    headers = _get(page_url(site, A, site["tokens"][A]))[2]
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["Referrer-Policy"] == "no-referrer"
    assert "<script" not in dom and "src=" not in dom and "<link" not in dom  # self-contained: works offline
    for text in (
        "Your home · hh-alpha",
        "Run the washing machine after 00:00",
        "saves about €0.37 a day",
        fmt.money(a_schedule["savings"], "EUR"),
        "usage group 0",
        "37 homes",
        "Unusually high load at night",
        "Day-ahead plan and prices",
        "<svg",
        "€0.120/kWh",
        fmt.power(900.0 * max(EVENING) * 1.2),
    ):
        assert text in dom, text
    assert not [m for m in b_markers(site) if m in dom]


def test_a_households_token_never_opens_another_household_or_the_operator_view(site):
    a_token = site["tokens"][A]
    refused = [
        page_url(site, B, a_token),
        f"{site['url']}/operator?code={a_token}",
        page_url(site, B, None),
        page_url(site, B, "0" * 32),
        f"{site['url']}/operator",
    ]
    for url in refused:
        status, body, headers = _get(url)
        assert status == 403 and "Access code" in body and "no-referrer" in headers["Referrer-Policy"], url
        assert not [m for m in b_markers(site) if m in body], url
    with ThreadPoolExecutor(3) as pool:  # what a browser ends up showing
        doms = list(pool.map(browse, refused[:3]))
    for url, dom in zip(refused, doms):
        assert "Sign in" in dom and "<svg" not in dom, url
        assert not [m for m in b_markers(site) if m in dom], url
    bearer = {"Authorization": f"Bearer {a_token}"}
    assert _get(f"{site['url']}/api/household/{B}", headers=bearer)[:2] == (403, {"error": "forbidden"})
    assert _get(f"{site['url']}/api/operator", headers=bearer)[:2] == (403, {"error": "forbidden"})
    assert _get(f"{site['url']}/api/household/{A}?code={a_token}")[:2] == (
        403,
        {"error": "forbidden"},
    )  # no codes in API URLs
    assert set(_get(f"{site['url']}/healthz")[1]) >= {"status", "accepted", "rejected"}  # counters, no data
    status, data, _ = _get(f"{site['url']}/api/household/{A}", headers=bearer)
    assert status == 200 and data["cluster"]["cluster"] == 0 and data["schedule"]["household_id"] == A


def test_the_token_cookie_keeps_a_browser_on_its_own_household(site, tmp_path):
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    assert "Your home · hh-alpha" in browse(page_url(site, A, site["tokens"][A]), profile)
    assert "Your home · hh-alpha" in browse(page_url(site, A, None), profile)  # the cookie alone opens A
    dom = browse(page_url(site, B, None), profile)  # ... but never B
    assert "Sign in" in dom and not [m for m in b_markers(site) if m in dom]


def sign_in_form(url: str) -> tuple[urllib.request.OpenerDirector, str]:
    """A browser-like client holding the sign-in page's pre-session cookie, and the form's CSRF token."""
    no_redirect = type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {"redirect_request": lambda *a, **k: None})
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), no_redirect)
    with opener.open(f"{url}/", timeout=10) as response:
        html = response.read().decode()
    return opener, re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def post(opener, url: str, form: dict) -> tuple[int, dict, str]:
    try:
        with opener.open(urllib.request.Request(url, data=urllib.parse.urlencode(form).encode()), timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_the_login_form_opens_a_session_only_for_the_right_code(site):
    opener, csrf = sign_in_form(site["url"])
    code = site["tokens"][A]
    status, headers, _ = post(
        opener, f"{site['url']}/login", {"role": "household", "household_id": A, "code": code, "csrf": csrf}
    )
    assert status == 303 and headers["Location"] == f"/household/{A}"
    cookie = headers["Set-Cookie"]
    assert "gridflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert code not in cookie and code.replace("-", "") not in cookie, (
        "the cookie must name a session, not carry the code"
    )
    with opener.open(f"{site['url']}/household/{A}", timeout=10) as page:  # the session alone opens A
        assert "Your home · hh-alpha" in page.read().decode()
    opener, csrf = sign_in_form(site["url"])
    wrong = {"role": "household", "household_id": B, "code": code, "csrf": csrf}
    status, headers, body = post(opener, f"{site['url']}/login", wrong)
    assert status == 403 and "gridflow_session" not in headers.get("Set-Cookie", "") and "dishwasher" not in body


def test_operator_view_shows_clusters_alerts_and_feeder_load(site):
    dom = browse(f"{site['url']}/operator?code={site['tokens']['operator']}")
    feeder_now_w = 900.0 * EVENING[-1] + 400.0 * MORNING[-1]
    for text in (
        "Operator view",
        "Cluster 0 · 37 households",
        "Cluster 1 · 21 households",
        "Feeder load today",
        fmt.power(feeder_now_w),
        "Unusually high load at night",
        "Wi-Fi",
        A,
        B,
    ):
        assert text in dom, text


def test_the_history_view_draws_from_the_parquet_history(site):
    """The operator's history page after ``gridflow history write``: the day's fleet peak, the alerts of the
    week and each cluster's shape, all computed here from the records the topics were given."""
    from datetime import datetime, timezone

    from gridflow.history.writer import HistoryWriter
    from gridflow.web.history_view import history_view, render_history

    stats = HistoryWriter(site["settings"]).run(until_caught_up=True)
    assert stats.records == sum(
        len(site["data"][k])
        for k in ("features", "profiles", "assignments", "centroids", "alerts", "schedules", "recommendations")
    )
    dom = browse(f"{site['url']}/operator/history?code={site['tokens']['operator']}")
    totals = {}
    for f in site["data"]["features"]:
        totals[f["window_start_ms"]] = totals.get(f["window_start_ms"], 0.0) + f["mean_w"]
    peak_at = max(totals, key=lambda t: (totals[t], -t))
    day = datetime.fromtimestamp(DAY / 1000, timezone.utc)
    week = "%d-W%02d" % day.isocalendar()[:2]
    for text in (
        "Feeder peaks per day",
        "feeder-1",
        day.strftime("%Y-%m-%d"),
        fmt.power(totals[peak_at]),
        "Alerts per week",
        week,
        "sustained_high_load",
        "meter_gap",
        "Cluster 0",
        "Cluster 1",
        "Cluster shapes over time",
    ):
        assert text in dom, text
    assert _get(f"{site['url']}/operator/history")[0] in (401, 403), "the history needs the operator's sign-in"
    # with a feeder map: one household per feeder, each feeder's own peak, judged against a small capacity
    feeders = site["settings"].stack.run_dir + "/feeders.csv"
    with open(feeders, "w") as out:
        out.write(f"household_id,feeder\n{A},north\n")
    view = history_view(
        site["settings"].with_overrides(f"balancing.feeder_file={feeders}", "balancing.feeder_capacity_kw=1.5")
    )
    own = {}
    for f in site["data"]["features"]:
        feeder = "north" if f["household_id"] == A else "feeder-1"
        own[feeder] = max(own.get(feeder, 0.0), f["mean_w"])  # one household each: its own highest minute
    assert {(d, feeder): w for d, feeder, w, _ in view["peaks"]} == {
        (day.strftime("%Y-%m-%d"), feeder): w for feeder, w in own.items()
    }
    html = render_history(view, timezone="UTC", refresh_s=0)
    assert html.count("over capacity") == sum(w > 1500 for w in own.values()) > 0


@pytest.mark.parametrize("size", [(390, 844), (1280, 800)], ids=["phone", "desktop"])
def test_screenshots_are_the_right_size_and_show_the_page(site, size, tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    image = screenshot(page_url(site, A, site["tokens"][A]), folder / f"household-{size[0]}x{size[1]}.png", size)
    assert image.size == size
    assert max(ImageStat.Stat(image).stddev) > 20, "blank screenshot"
    assert share_of(image, ACCENT) > 0.02, "no accent colour: header or load bars missing"
    if size[0] >= 1000:  # the desktop viewport reaches the charts
        assert share_of(image, TYPICAL, tolerance=40) > 0.0002, "the cluster's typical shape is not drawn"
    operator = screenshot(
        f"{site['url']}/operator?code={site['tokens']['operator']}", folder / f"operator-{size[0]}x{size[1]}.png", size
    )
    assert operator.size == size and max(ImageStat.Stat(operator).stddev) > 20
    assert share_of(operator, ACCENT) > 0.02


def test_the_store_stays_bounded_and_bad_records_never_break_a_page():
    store = PageStore("UTC", alerts_per_household=3, recent_alerts=5, recommendations_per_household=2)
    for day in (DAY - DAY_MS, DAY):  # 30-second windows over two days: only the newest day, one per minute
        for i in range(2880):
            store.add("features", {"household_id": A, "window_start_ms": day + i * 30_000, "mean_w": 100.0 + i})
    store.add("features", {"household_id": A, "window_start_ms": DAY - 1, "mean_w": 5.0})  # an older day: ignored
    for i in range(10):
        store.add(
            "alerts", {"household_id": A, "type": "spike", "severity": "high", "message": f"alert {i}", "ts_ms": i}
        )
        store.add(
            "recommendations",
            {"household_id": A, "kind": "shift", "appliance": f"a{i}", "text": f"do {i}", "created_ms": i},
        )
    view = store.household(A)
    assert view["today"]["minutes"] == 1440 and view["today"]["latest_w"] == 100.0 + 2879
    assert [a["message"] for a in view["alerts"]] == ["alert 9", "alert 8", "alert 7"]
    assert len(store.overview()["alerts"]) == 5 and [r["text"] for r in view["recommendations"]] == ["do 9", "do 8"]
    rejected = store.rejected
    junk = [None, [], "x", {"household_id": "bad id/../", "text": "t"}, {"cluster": None}]
    for kind in KINDS:
        for record in junk:
            assert store.add(kind, record) is False, (kind, record)
    assert not store.add("features", {"household_id": B, "window_start_ms": "1", "mean_w": 1})
    assert not store.add("assignments", {"household_id": B, "cluster": "a"})
    assert not store.add("recommendations", {"household_id": B, "text": 3})
    assert store.rejected == rejected + len(KINDS) * len(junk) + 3
    odd = [
        {
            "household_id": B,
            "start_ts_ms": "x",
            "slots": "7",
            "price_per_kwh": ["a", None, 1e309],
            "currency": "<b>",
            "savings": "x",
            "appliances": [1, {"name": "<b>"}],
        },
        {"household_id": B, "kind": "shift", "text": "<b>hi</b>", "saving_per_day": "x", "to_ts_ms": 5},
        {"household_id": B, "severity": "<b>", "evidence": [1], "ts_ms": "x"},
        {"cluster": 1, "profile_norm": "<b>", "size": "<b>"},
        {"household_id": B, "cluster": 1},
    ]
    for kind in KINDS:
        for record in odd:
            store.add(kind, record)
    html = render_household(store.household(B), timezone="UTC", currency="EUR", refresh_s=0)
    html += render_operator(store.overview(), timezone="UTC", refresh_s=0)
    assert "<b>" not in html and "&lt;b&gt;hi&lt;/b&gt;" in html
