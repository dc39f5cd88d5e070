"""The documents' Babel formatting lives in `billing_site.formatting` (admin formats money the same way);
this name stays for the document modules that import it."""

from billing_site.formatting import Formatter, locale_parse

__all__ = ["Formatter", "locale_parse"]
