"""The Streamlit app that ``breeboost dashboard`` serves: six pages over one :class:`LiveSource`.

Run by ``streamlit run`` as its main script (``breeboost dashboard`` does it with the right options);
importing this module does nothing. Tests render one page over plain data with :func:`render_page`.
"""
from __future__ import annotations

import getpass
import hmac
import sys
import time
from typing import Callable

import streamlit as st

from breeboost.commands.dashboard import dashboard_token, is_loopback, parse_app_arguments
from breeboost.dashboard.data import LiveSource, Source, shared
from breeboost.dashboard.ui import drift, health, incidents, overview, simulator, transactions
from breeboost.dashboard.ui.common import PageContext
from breeboost.errors import SettingsError
from breeboost.settings import Secret, Settings

__all__ = ["PAGES", "main", "render_page"]

#: url path -> (title, icon, render)
PAGES: dict[str, tuple[str, str, Callable[[PageContext], None]]] = {
    "overview": ("Overview", ":material/monitoring:", overview.render),
    "transactions": ("Transactions", ":material/receipt_long:", transactions.render),
    "drift": ("Drift", ":material/stacked_line_chart:", drift.render),
    "model-health": ("Model health", ":material/health_and_safety:", health.render),
    "incidents": ("Incidents", ":material/e911_emergency:", incidents.render),
    "simulator": ("Simulator", ":material/play_circle:", simulator.render),
}


def render_page(name: str, source: Source, author: str | None = "tester", refresh_s: float | None = None) -> None:
    """Render page ``name`` over ``source`` (the tests' way in: no server, no gate, no refresh)."""
    PAGES[name][2](PageContext(source, refresh_s, author))


@st.cache_resource(show_spinner=False)
def _live_source(metrics_urls: tuple[str, ...], state_dir: str | None) -> LiveSource:
    """One live source per server process, shared by every browser session (one set of topic readers):
    the one :mod:`breeboost.dashboard.server` built at start-up, or (``streamlit run`` by hand) a new one."""
    return shared() or LiveSource(Settings.from_env(), list(metrics_urls), state_dir)


def _gate(token: Secret) -> bool:
    """Beyond loopback: the browser session must give the token (and the operator's name) once."""
    if st.session_state.get("authed"):
        return True
    st.title("BreeBoost")
    if not token:
        st.error("This dashboard is served beyond loopback without BREEBOOST_DASHBOARD_TOKEN: refusing to show it.")
        return False
    with st.form("login"):
        given = st.text_input("Access token", type="password")
        name = st.text_input("Your name (recorded on every acknowledge or close)")
        ok = st.form_submit_button("Enter")
    if ok:
        if not hmac.compare_digest(given.encode(), token.reveal().encode()):
            time.sleep(1.0)   # a guess a second per session, not thousands
            st.error("Wrong token.")
        elif not name.strip():
            st.error("Give your name: the incidents you acknowledge or close record it.")
        else:
            st.session_state["authed"], st.session_state["operator"] = True, name.strip()
            st.rerun()
    return False


def _operator(loopback: bool) -> str | None:
    if not loopback:
        st.sidebar.caption(f"Signed in as **{st.session_state.get('operator')}**")
        return st.session_state.get("operator")
    try:
        default = getpass.getuser()
    except (KeyError, OSError):
        default = ""
    name = st.sidebar.text_input("Your name", value=default, key="operator_name",
                                 help="Recorded on every acknowledge or close you do here")
    return name.strip() or None


def main(argv: list[str] | None = None) -> None:
    args = parse_app_arguments(sys.argv[1:] if argv is None else argv)
    st.set_page_config(page_title="BreeBoost", page_icon=":material/shield:", layout="wide")
    loopback = is_loopback(args.host)
    if not loopback and not _gate(dashboard_token()):
        st.stop()
    try:
        source = _live_source(tuple(args.metrics_url), args.incident_state)
    except SettingsError as e:
        st.error(f"invalid setting: {e}")
        st.stop()
    ctx = PageContext(source, args.refresh, _operator(loopback))
    st.sidebar.caption(f"Kafka {source.settings.bootstrap} - refreshes every {args.refresh:g} s")
    pages = [st.Page(lambda r=render: r(ctx), title=title, icon=icon, url_path=path, default=(path == "overview"))
             for path, (title, icon, render) in PAGES.items()]
    st.navigation(pages, position="sidebar").run()


if __name__ == "__main__":
    main()
