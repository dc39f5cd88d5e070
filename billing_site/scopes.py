"""Our scopes, and the table that maps an identity provider's scope names onto them.

No Django imports: settings parse `JWT_SCOPE_MAP` with this module before apps are loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SCOPES = (
    "customers:read",
    "customers:write",
    "catalog:read",
    "catalog:write",
    "usage:read",
    "usage:write",
    "billing:read",
    "billing:write",
    "payments:read",
    "payments:write",
    "webhooks:manage",
    "admin",
)

_TENANTS_READ = ("customers:read",)
_TENANTS_WRITE = ("customers:write",)

# The SaaS control plane's auth interface (sbt-aws IAuth) names one scope per operation on tenants and
# users; both are our customers and their users. Its Cognito implementation gives those properties the
# values of two scopes per resource server (`tenant/tenant_read`, `user/user_write`, ...), and its
# source calls those scopes readTenantScope/writeTenantScope/readUserScope/writeUserScope: all three
# spellings are mapped, so a token from that control plane works without configuration.
DEFAULT_SCOPE_MAP: dict[str, tuple[str, ...]] = {
    # IAuth property names.
    "fetchTenantScope": _TENANTS_READ,
    "fetchAllTenantsScope": _TENANTS_READ,
    "createTenantScope": _TENANTS_WRITE,
    "updateTenantScope": _TENANTS_WRITE,
    "deleteTenantScope": _TENANTS_WRITE,
    "activateTenantScope": _TENANTS_WRITE,
    "deactivateTenantScope": _TENANTS_WRITE,
    "fetchUserScope": _TENANTS_READ,
    "fetchAllUsersScope": _TENANTS_READ,
    "createUserScope": _TENANTS_WRITE,
    "updateUserScope": _TENANTS_WRITE,
    "deleteUserScope": _TENANTS_WRITE,
    "disableUserScope": _TENANTS_WRITE,
    "enableUserScope": _TENANTS_WRITE,
    # The Cognito implementation's scope names in its source.
    "readTenantScope": _TENANTS_READ,
    "writeTenantScope": _TENANTS_WRITE,
    "readUserScope": _TENANTS_READ,
    "writeUserScope": _TENANTS_WRITE,
    # The scope strings Cognito puts in the token (`<resource server>/<scope>`).
    "tenant/tenant_read": _TENANTS_READ,
    "tenant/tenant_write": _TENANTS_WRITE,
    "user/user_read": _TENANTS_READ,
    "user/user_write": _TENANTS_WRITE,
}


class ScopeMapError(ValueError):
    pass


def scope_map_build(overrides: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """The defaults with `overrides` applied: an entry replaces the default of the same name, `[]`
    maps a name to nothing. A value is one of our scopes or a list of them; anything else is refused."""
    table = dict(DEFAULT_SCOPE_MAP)
    for external, value in overrides.items():
        if not isinstance(external, str) or not external.strip() or any(c.isspace() for c in external):
            raise ScopeMapError(f"the scope name {external!r} must be a non-empty string without spaces")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ScopeMapError(f"the value for {external!r} must be a scope or a list of scopes")
        unknown = [v for v in values if v not in SCOPES]
        if unknown:
            raise ScopeMapError(
                f"{external!r} maps to unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}"
            )
        table[external] = tuple(dict.fromkeys(values))
    return table


def scopes_map(external_scopes: Iterable[str], table: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """Our scopes for a token's scopes. A name in the table maps through it (so an operator can remap or
    silence even one of our own names, e.g. `{"admin": []}`); otherwise our own names pass through and
    every other name (`openid`, `email`, ...) grants nothing."""
    granted: set[str] = set()
    for name in external_scopes:
        if name in table:
            granted.update(table[name])
        elif name in SCOPES:
            granted.add(name)
    return frozenset(granted)
