"""The customers' web UI: server-rendered pages over the same services as the REST API.

One blueprint per feature (``site``, ``auth``, ``accounts``, ``statement``, ``transfers``,
``history``, ``mandates``), nested in the ``web_ui`` blueprint that holds what they share: the language, the
login check, CSRF, ``Cache-Control: no-store``, the error pages, the templates and the static
files. ``init_app(app)`` registers it, the server-side sessions (``web_ui.sessions``) and
Flask-Babel with the UI's message catalogs (``web_ui.i18n``); the app factory (``bank_node.app``)
calls it. The UI never imports the API package, nor SQL nor pika.

Pages work without JavaScript; one small script (``static/app.js``) adds the running total of
a transfer, CPF/CNPJ masks, "processing" on submit and the self-updating page of a pending
transfer. Every asset is served by the node itself (the machines are offline), and the pages
keep the app's Content-Security-Policy: no inline script, no inline style.
"""
from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from flask_babel import Babel
from werkzeug.exceptions import HTTPException

from bank_node.domain.errors import DomainError
from bank_node.storage.port import StorageError
from broker import BrokerError

from . import accounts, auth, history, mandates, security, site, statement, transfers
from .common import domain_message, page_context, render, with_retry_after
from .i18n import TRANSLATIONS, locale_selector, pick_language
from .i18n import translate as _
from .sessions import StoredSessionInterface

ui = Blueprint("web_ui", __name__, template_folder="templates", static_folder="static",
               static_url_path="/ui/static")
for feature in (site, auth, accounts, statement, transfers, history, mandates):
    ui.register_blueprint(feature.bp)

_NO_SESSION_CHECK = frozenset({"web_ui.static", "web_ui.site.bank_css"})


@ui.before_request
def before():
    g.lang = pick_language()
    if request.endpoint in _NO_SESSION_CHECK:
        return None
    if request.method not in security.SAFE_METHODS and not security.csrf_ok():
        return render("error.html", 400, title=_("The form has expired"),
                      message=_("This page was open for too long or did not come from this bank. "
                                "Please reload it and try again."))
    security.load_user()
    if g.user is None and request.endpoint not in security.PUBLIC:
        return security.login_redirect()
    return None


@ui.after_request
def no_store(resp):
    # Balances and statements must not be kept by the browser's cache or shown by Back.
    if request.endpoint not in _NO_SESSION_CHECK:
        resp.headers["Cache-Control"] = "no-store"
    resp.vary.add("Accept-Language")
    resp.vary.add("Cookie")
    return resp


@ui.context_processor
def helpers():
    return page_context()


@ui.errorhandler(DomainError)
def domain_error(e: DomainError):
    return with_retry_after(render("error.html", e.status, title=_("Request refused"), message=domain_message(e)), e)


@ui.errorhandler(StorageError)
@ui.errorhandler(BrokerError)
def unavailable(e: Exception):
    current_app.logger.warning("web UI: service unavailable: %s", e)
    return render("error.html", 503, title=_("Service unavailable"),
                  message=_("The bank cannot answer right now; nothing was changed. Please try again in a moment."))


@ui.errorhandler(HTTPException)
def http_error(e: HTTPException):
    return render("error.html", e.code or 500, title=_("Something went wrong"),
                  message=_("The page could not be shown (%(code)s).", code=e.code))


@ui.errorhandler(Exception)
def unexpected(e: Exception):
    current_app.logger.exception("web UI: unexpected error")
    return render("error.html", 500, title=_("Something went wrong"),
                  message=_("Something went wrong on our side; nothing was changed. Please try again."))


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
        message = _("The page could not be shown (%(code)s).", code=code)
    body = render_template("web_ui/error.html", **page_context(), title=title, message=message)
    resp = Response(body, status=code, mimetype="text/html")
    for name, value in e.get_headers():  # e.g. Allow on a 405
        if name.lower() != "content-type":
            resp.headers[name] = value
    resp.headers["Cache-Control"] = "no-store"
    resp.vary.add("Accept-Language")
    resp.vary.add("Cookie")
    return resp


def init_app(app: Flask) -> None:
    # Flask-Babel: gettext for the code, and Jinja's i18n extension (``_``, ``ngettext``) for the
    # templates, in the language the UI picked for the request.
    Babel(app, default_locale="pt_BR", default_translation_directories=str(TRANSLATIONS),
          locale_selector=locale_selector)
    app.session_interface = StoredSessionInterface()
    app.extensions["web_ui_error_page"] = html_error_page
    app.register_blueprint(ui)
