"""The customers' web UI: a Flask blueprint over the same services as the API (no SQL, no pika).

Server-rendered pages that work without JavaScript; one small script (``static/app.js``) adds
the running total of a transfer, CPF/CNPJ masks and the self-updating status of a pending
transfer. Every asset is served by the node itself (the machines are offline), and the pages
keep the app's Content-Security-Policy: no inline script, no inline style.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, render_template, request

from bank_node.domain.errors import DomainError
from bank_node.storage.port import StorageError
from broker import BrokerError
from werkzeug.exceptions import HTTPException

from . import formatting as F
from . import security, views
from .i18n import LANGS, pick_language
from .i18n import translate as _


def page_context() -> dict:
    """What every template of the UI may use (also for the pages of addresses the UI does not have)."""
    node = current_app.extensions["bank_node"]
    lang = getattr(g, "lang", "pt-BR")
    return {
        "_": _, "lang": lang, "langs": LANGS, "bank": node.bank, "banks": node.config.banks,
        "user": getattr(g, "user", None), "csrf_token": security.csrf_token,
        "csrf_field": security.CSRF_FIELD,
        "money": lambda v: F.money(v, lang), "fmt_cpf": F.cpf, "fmt_cnpj": F.cnpj,
        "fmt_account": F.account_number, "fmt_datetime": lambda v: F.local_datetime(v, lang),
        "kind_label": lambda k: _(views.KIND_LABELS.get(k, k)),
        "entry_label": lambda k: _(views.ENTRY_LABELS.get(k, k)),
        "bank_of": views.bank_of,
        "max_amount": node.config.limits.max_amount,
    }


def html_error_page(e: HTTPException) -> Response:
    """A 404 or 405 outside /api (a mistyped address, a form sent the wrong way) as a page of the
    bank in the customer's language, instead of the API's problem+json. The app's error handler
    (bank_node.api.errors) calls it through ``app.extensions["web_ui_error_page"]``. The address
    is not repeated on the page: whatever was typed there stays out of it."""
    g.lang = pick_language()
    try:
        security.load_user()
    except Exception:  # noqa: BLE001 - an error page must not fail on the session's storage
        g.user = None
    code = e.code or 500
    if code == 404:
        title = _("Page not found")
        message = _("There is no page at this address. Check the address, or start again from the beginning.")
    elif code == 405:
        title = _("Not allowed here")
        message = _("This page cannot be used this way. Go back and use the links and buttons of the page.")
    else:
        title = _("Something went wrong")
        message = _("The page could not be shown ({code}).", code=code)
    body = render_template("web_ui/error.html", **page_context(), title=title, message=message)
    resp = Response(body, status=code, mimetype="text/html")
    for name, value in e.get_headers():  # e.g. Allow on a 405
        if name.lower() != "content-type":
            resp.headers[name] = value
    resp.headers["Cache-Control"] = "no-store"
    resp.vary.add("Accept-Language")
    resp.vary.add("Cookie")
    return resp


def create_blueprint() -> Blueprint:
    bp = Blueprint("web_ui", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/ui/static")
    bp.record_once(lambda state: state.app.extensions.setdefault("web_ui_error_page", html_error_page))

    @bp.before_request
    def before():
        g.lang = pick_language()
        if request.endpoint in ("web_ui.static", "web_ui.bank_css"):
            return None
        if request.method not in security.SAFE_METHODS and not security.csrf_ok():
            return views.render("error.html", 400, title=_("The form has expired"),
                                message=_("This page was open for too long or did not come from this bank. "
                                          "Please reload it and try again."))
        security.load_user()
        if g.user is None and request.endpoint not in security.PUBLIC:
            return security.login_redirect()
        return None

    @bp.after_request
    def no_store(resp):
        # Balances and statements must not be kept by the browser's cache or shown by Back.
        if request.endpoint not in ("web_ui.static", "web_ui.bank_css"):
            resp.headers.setdefault("Cache-Control", "no-store")
        resp.vary.add("Accept-Language")
        resp.vary.add("Cookie")
        return resp

    @bp.context_processor
    def helpers():
        return page_context()

    @bp.errorhandler(DomainError)
    def domain_error(e: DomainError):
        return views.with_retry_after(views.render("error.html", e.status, title=_("Request refused"),
                                                   message=views.domain_message(e)), e)

    @bp.errorhandler(StorageError)
    @bp.errorhandler(BrokerError)
    def unavailable(e: Exception):
        current_app.logger.warning("web UI: service unavailable: %s", e)
        return views.render("error.html", 503, title=_("Service unavailable"),
                            message=_("The bank cannot answer right now; nothing was changed. "
                                      "Please try again in a moment."))

    @bp.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return views.render("error.html", e.code or 500, title=_("Something went wrong"),
                            message=_("The page could not be shown ({code}).", code=e.code))

    @bp.errorhandler(Exception)
    def unexpected(e: Exception):
        current_app.logger.exception("web UI: unexpected error")
        return views.render("error.html", 500, title=_("Something went wrong"),
                            message=_("Something went wrong on our side; nothing was changed. Please try again."))

    views.register(bp)
    return bp
