"""HTML + CSS templates rendered to PDF by WeasyPrint.

WeasyPrint lays text out with Pango (a system library, loaded through cffi when WeasyPrint is first
imported). A machine without it can still serve every document already stored; only a new rendering
needs it, and then the caller gets a 503 that names what is missing rather than a crash. The import is
therefore made on first use, not when this module loads.

Documents may fetch nothing: the only resource a template uses (the seller's logo) is inlined as a
`data:` URL, and the fetcher refuses every other scheme, so text a customer typed (a name, an address)
can never make the renderer read a file or call a URL.
"""

from __future__ import annotations

import base64
import importlib
import logging
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from billing_site.errors import ApiError

logger = logging.getLogger(__name__)


class DocumentRendererUnavailable(ApiError):
    """WeasyPrint, or a system library it loads (Pango, HarfBuzz, fontconfig), is missing here."""

    status_code = 503
    type = "api_error"
    code = "pdf_renderer_unavailable"


def _weasyprint() -> Any:
    try:
        return importlib.import_module("weasyprint")
    except ImportError as exc:
        raise DocumentRendererUnavailable(
            "PDF rendering is unavailable: the WeasyPrint package is not installed "
            f"({exc}). Install the pinned dependencies (make install)."
        ) from exc
    except OSError as exc:
        # cffi's dlopen failing: the message names the library ("cannot load library 'libpango-1.0-0'").
        logger.error("WeasyPrint cannot load a system library: %s", exc)
        raise DocumentRendererUnavailable(
            "PDF rendering is unavailable: WeasyPrint could not load the Pango text library "
            f"({exc}). Install Debian's libpango-1.0-0, libpangoft2-1.0-0 and libharfbuzz-subset0."
        ) from exc


@lru_cache(maxsize=4)
def _logo_data_url(path: str) -> str:
    content = Path(path).read_bytes()
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"  # settings allow png, jpeg, svg
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def seller_context() -> dict[str, Any]:
    """Who issues the documents, from settings (README: Configuration)."""
    return {
        "name": settings.SELLER_NAME,
        "address": list(settings.SELLER_ADDRESS),
        "tax_id": settings.SELLER_TAX_ID,
        "logo": _logo_data_url(settings.SELLER_LOGO_PATH) if settings.SELLER_LOGO_PATH else "",
        "footer": settings.DOCUMENT_FOOTER,
    }


def document_html(template: str, context: dict[str, Any]) -> str:
    """The document as HTML: `template` (under `templates/documents/`) with the seller added."""
    return render_to_string(template, {"seller": seller_context(), **context})


def html_to_pdf(html: str) -> bytes:
    """Render HTML to PDF bytes. Slow (tens to hundreds of milliseconds): never call it inside a
    database transaction. Raises DocumentRendererUnavailable (503) where WeasyPrint cannot run."""
    weasyprint = _weasyprint()
    fetcher = weasyprint.URLFetcher(allowed_protocols=["data"], timeout=1)
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
