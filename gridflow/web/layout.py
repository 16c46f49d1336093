"""The HTML shell shared by every page: one inline stylesheet (mobile first), no scripts, no external files."""

from __future__ import annotations

from html import escape

ACCENT = "#0f766e"  # header, today's load, planned load
TYPICAL = "#d97706"  # the cluster's typical shape
PRICE = "#7c3aed"  # the price curve
BEFORE = "#94a3b8"  # load without the plan

CSS = f"""
*{{box-sizing:border-box}}
html{{-webkit-text-size-adjust:100%}}
body{{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1e293b;background:#f1f5f9}}
.top{{background:{ACCENT};color:#fff;padding:14px 0 16px}}
.top .brand{{font-size:13px;letter-spacing:.08em;text-transform:uppercase;opacity:.85}}
.top h1{{margin:2px 0 0;font-size:22px;line-height:1.2}}
.top p{{margin:4px 0 0;font-size:14px;opacity:.9}}
.wrap{{max-width:1180px;margin:0 auto;padding:0 14px}}
main.wrap{{padding-top:14px;padding-bottom:28px}}
.stats{{display:grid;grid-template-columns:1fr 1fr;gap:10px;margin-bottom:12px}}
.stat{{background:#fff;border-radius:10px;padding:10px 12px;box-shadow:0 1px 2px rgba(15,23,42,.08)}}
.stat .label{{font-size:13px;color:#64748b}}
.stat .value{{font-size:22px;font-weight:650;line-height:1.25}}
.stat .note{{font-size:13px;color:#475569}}
.stat.good .value{{color:{ACCENT}}}
.grid{{display:grid;grid-template-columns:1fr;gap:12px;align-items:start}}
.card{{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(15,23,42,.08);min-width:0}}
.card h2{{font-size:18px;margin:0 0 8px}}
.card p{{margin:6px 0}}
.muted{{color:#64748b;font-size:14px}}
.chart{{width:100%;height:auto;display:block}}
.chart.only-wide{{display:none}}
.chart text{{fill:#475569}}
.chart .grid{{stroke:#e2e8f0;stroke-width:1}}
.chart .axis{{stroke:#94a3b8;stroke-width:1}}
.legend{{list-style:none;padding:0;margin:6px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:14px;color:#475569}}
.legend .key{{display:inline-block;width:16px;height:10px;margin-right:6px;vertical-align:middle;border-radius:2px}}
.actions{{margin:0;padding:0;list-style:none}}
.actions li{{padding:10px 0;border-top:1px solid #e2e8f0}}
.actions li:first-child{{border-top:0;padding-top:2px}}
.save{{display:inline-block;margin-top:4px;background:#ccfbf1;color:#115e59;border-radius:999px;padding:1px 10px;font-size:14px;font-weight:600}}
.alert{{border-left:4px solid #94a3b8;padding:6px 10px;margin:8px 0;background:#f8fafc;border-radius:4px}}
.alert.high,.alert.critical{{border-color:#dc2626;background:#fef2f2}}
.alert.medium,.alert.warning{{border-color:#d97706;background:#fffbeb}}
.alert .meta{{font-size:13px;color:#64748b}}
.tablewrap{{overflow-x:auto}}
table{{border-collapse:collapse;width:100%;font-size:14px}}
th,td{{text-align:left;padding:6px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}}
th{{color:#64748b;font-weight:600}}
td.num,th.num{{text-align:right;white-space:nowrap}}
.clusters{{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px 16px}}
.clusters figure{{margin:0}}
.clusters figcaption{{font-size:14px;color:#475569}}
form.login{{display:grid;gap:10px;max-width:360px}}
form.login input{{font:inherit;padding:10px;border:1px solid #cbd5e1;border-radius:8px}}
form.login button{{font:inherit;padding:10px;border:0;border-radius:8px;background:{ACCENT};color:#fff;font-weight:600}}
form.signout{{float:right;font-size:14px;margin-top:2px}}
form.signout button{{font:inherit;font-size:14px;padding:4px 10px;border:1px solid #fff;border-radius:6px;background:transparent;color:#fff}}
@media (min-width:760px){{
  .stats{{grid-template-columns:repeat(4,1fr)}}
  .grid{{grid-template-columns:1fr 1fr}}
  .card.wide{{grid-column:1/-1}}
  .chart.only-wide{{display:block}}
  .chart.only-narrow{{display:none}}
  .top h1{{font-size:28px}}
}}
"""


def page(title: str, heading: str, subtitle: str, body: str, *, refresh_s: int = 0, controls: str = "") -> str:
    """A complete HTML document; ``body`` and ``controls`` (top right) are trusted HTML built with escaped values."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s > 0 else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="theme-color" content="{ACCENT}">{refresh}<title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f'<header class="top"><div class="wrap">{controls}<div class="brand">gridflow</div><h1>{escape(heading)}</h1>'
        f"<p>{escape(subtitle)}</p></div></header>"
        f'<main class="wrap">{body}</main></body></html>'
    )


def stat(label: str, value: str, note: str = "", good: bool = False) -> str:
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="stat{" good" if good else ""}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{note_html}</div>'
    )


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">'


def login_page(message: str, *, csrf: str, operator: bool = False) -> str:
    """The sign-in page (also every 403): a form and nothing about any household."""
    who = (
        ""
        if operator
        else '<label>Household number<br><input name="household_id" autocomplete="username" required></label>'
    )
    role = "operator" if operator else "household"
    body = (
        f'<section class="card"><h2>Sign in</h2><p>{escape(message)}</p>'
        f'<form class="login" method="post" action="/login"><input type="hidden" name="role" value="{role}">'
        f'{_csrf_field(csrf)}{who}<label>Access code<br><input name="code" type="password" '
        'autocomplete="current-password" required></label><button type="submit">Open my page</button></form></section>'
    )
    return page(
        "Sign in - gridflow", "Operator view" if operator else "Your home energy page", "Access code needed", body
    )


def signout_form(csrf: str, who: str) -> str:
    """The header's sign-out button for a signed-in page."""
    return (
        f'<form class="signout" method="post" action="/logout">{_csrf_field(csrf)}'
        f'<span>{escape(who)}</span> <button type="submit">Sign out</button></form>'
    )


def revoke_card(csrf: str) -> str:
    """The operator-role card that revokes every access code and session of one household."""
    return (
        '<section class="card"><h2>Household access</h2><p class="muted">Revoke every access code and session '
        "of a household, e.g. when a code was lost. Issue a new one with <code>gridflow page token issue</code>.</p>"
        f'<form class="login" method="post" action="/operator/revoke">{_csrf_field(csrf)}'
        '<label>Household number<br><input name="household_id" required></label>'
        '<button type="submit">Revoke access</button></form></section>'
    )


def notice_page(heading: str, message: str, *, back: str, status_line: str = "") -> str:
    """A plain result page with one link back."""
    body = f'<section class="card"><p>{escape(message)}</p><p><a href="{escape(back)}">Back</a></p></section>'
    return page(f"{heading} - gridflow", heading, status_line, body)
