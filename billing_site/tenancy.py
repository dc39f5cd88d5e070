"""Tenant-scoped principals: a JWT carrying the tenant claim acts only on that tenant's own customer.

The core knows tenants only by their external id (the control plane's tenant id); which customer that
is belongs to the customers app, which registers a resolver here in its `AppConfig.ready()` (the core
may not import it). Views read `ApiView.tenant_scope` and hand it to their selectors, which answer
another tenant's objects as missing (404, never 403: their existence is not revealed) and filter lists.

Each API method declares how it treats a tenant-scoped principal in `ApiView.tenant_access`:
- `TENANT_SCOPED`: its handler limits what it reads and writes to the principal's tenant;
- `OPERATORS_ONLY`: refused (403 `operator_only`): the operation is the operator's by design;
- not declared: refused (403 `tenant_scope_unsupported`), so an endpoint nobody has scoped yet fails
  closed instead of leaking. The isolation test walks the OpenAPI schema and checks all three.
Operators (API keys, tokens without the claim) are never affected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

TENANT_SCOPED = "scoped"
OPERATORS_ONLY = "operators_only"

TenantResolver = Callable[[str], "str | None"]
_resolver: TenantResolver | None = None


@dataclass(frozen=True)
class TenantScope:
    """The tenant a principal is bound to. `customer_id` is None when no customer has that external id
    (yet): then the principal sees nothing at all."""

    external_id: str
    customer_id: str | None

    def allows(self, customer_id: str | None) -> bool:
        return self.customer_id is not None and customer_id == self.customer_id


def tenant_resolver_register(resolver: TenantResolver) -> None:
    """Called once by the app that owns customers: `resolver(external_id)` returns a customer id or None."""
    global _resolver
    _resolver = resolver


def tenant_scope_of(principal: Any) -> TenantScope | None:
    """The scope of a principal, or None when it is not bound to a tenant (an operator)."""
    external_id = getattr(principal, "tenant_external_id", None)
    if external_id is None:
        return None
    if _resolver is None:
        # Fail closed: without a resolver a tenant's principal must see nothing rather than everything.
        logger.error("No tenant resolver is registered; tenant-scoped principals see nothing")
        return TenantScope(external_id=external_id, customer_id=None)
    return TenantScope(external_id=external_id, customer_id=_resolver(external_id))


def tenant_filter(queryset: Any, tenant: TenantScope | None, field: str = "customer_id") -> Any:
    """`queryset` limited to the tenant's own rows (`field` names the customer), all of it for operators,
    none of it for a tenant without a customer. Selectors call it with the `tenant` their view hands them."""
    if tenant is None:
        return queryset
    if tenant.customer_id is None:
        return queryset.none()
    return queryset.filter(**{field: tenant.customer_id})
