"""Finalized documents are rendered once and kept; drafts are rendered on every request and never kept.

Rendering is lazy: the first request for a finalized document renders it and stores the bytes, and every
later request gets those same bytes. Rendering at finalization (a task per invoice) was the other
choice; it would put a PDF rendering (tens to hundreds of milliseconds of CPU and tens of kilobytes of
storage) behind every invoice a renewal run issues, most of which nobody opens. The first reader waits
once instead. Either way the rule that matters holds: the document a customer received never changes.

Nothing here runs inside a transaction: the existing row is read, the document rendered (slow), and only
the insert is its own small transaction. Two first requests at once both render; the unique constraint
lets one insert win and the other serves the winner's bytes, so both readers get the same document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from invoicing.models import StoredDocument


@dataclass(frozen=True)
class Pdf:
    content: bytes
    filename: str
    sha256: str
    stored: bool  # False: a draft, rendered for this request only


def pdf_unstored(*, content: bytes, filename: str) -> Pdf:
    return Pdf(content=content, filename=filename, sha256=hashlib.sha256(content).hexdigest(), stored=False)


def _as_pdf(row: StoredDocument) -> Pdf:
    return Pdf(content=bytes(row.content), filename=row.filename, sha256=row.sha256, stored=True)


def stored_document_get(*, kind: str, object_id: str) -> StoredDocument | None:
    return StoredDocument.objects.filter(kind=kind, object_id=object_id).first()


def stored_pdf_get_or_render(
    *,
    kind: str,
    object_id: str,
    customer_id: str,
    filename: str,
    locale: str,
    render: Callable[[], bytes],
    now: datetime,
) -> Pdf:
    """The stored PDF of (kind, object_id), rendering and storing it first if there is none yet."""
    existing = stored_document_get(kind=kind, object_id=object_id)
    if existing is not None:
        return _as_pdf(existing)
    content = render()
    row = StoredDocument(
        kind=kind,
        object_id=object_id,
        customer_id=customer_id,
        filename=filename,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        locale=locale,
        created_at=now,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        # Someone stored it while we rendered: theirs is the document, ours is dropped.
        winner = stored_document_get(kind=kind, object_id=object_id)
        if winner is None:  # the IntegrityError was something else (a bad customer id): not ours to hide
            raise
        return _as_pdf(winner)
    return _as_pdf(row)
