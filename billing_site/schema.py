"""OpenAPI: how drf-spectacular describes our authentication.

Every operation accepts either scheme (two alternative security requirements), and Swagger UI's
Authorize dialog offers both: paste an API key into `ApiKey` or a JWT into `JwtBearer`. With
OIDC_DISCOVERY_URL set, an `Oidc` (openIdConnect) scheme pointing at it is added beside them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "billing_site.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`bk_…`) with the scopes the endpoint names.",
        }


class JwtAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "billing_site.tokens.JwtAuthentication"
    name: Any = "JwtBearer"

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.name = ["JwtBearer", "Oidc"] if settings.OIDC_DISCOVERY_URL else "JwtBearer"

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        # Alternatives, not a combination: one requirement object per scheme.
        names = [self.name] if isinstance(self.name, str) else self.name
        return [{name: []} for name in names]

    def get_security_definition(self, auto_schema: Any) -> Any:
        bearer = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "A JWT access or ID token from the configured identity provider (JWT_ISSUER), signed with "
                "RS256/ES256 and meant for one of JWT_AUDIENCES. Its `scope`/`scp` claim is mapped onto our "
                "scopes (JWT_SCOPE_MAP); a token carrying the tenant claim (JWT_TENANT_CLAIM) sees only that "
                "tenant's own customer."
            ),
        }
        if isinstance(self.name, str):
            return bearer
        oidc = {
            "type": "openIdConnect",
            "openIdConnectUrl": settings.OIDC_DISCOVERY_URL,
            "description": "The same tokens, obtained from the identity provider through OpenID Connect.",
        }
        return [bearer, oidc]
