"""OpenAPI: how drf-spectacular describes our authentication.

`BillingAutoSchema` (the DEFAULT_SCHEMA_CLASS) gives every operation its tag, summary, own description
and documented error responses (the `Error` envelope).

Every operation accepts either scheme (two alternative security requirements), and Swagger UI's
Authorize dialog offers both: paste an API key into `ApiKey` or a JWT into `JwtBearer`. With
OIDC_DISCOVERY_URL set, an `Oidc` (openIdConnect) scheme pointing at it is added beside them.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED


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


# --- Operations: tags, summaries, descriptions, error responses ------------------------------------


# A path's first segment names its resource, except these nested collections.
_NESTED_TAGS = {"balance": "Balances", "balance-transactions": "Balances", "users": "Users"}
_ARTICLE_AN = ("a", "e", "i", "o", "u")
# Action segments whose verb phrase does not read as "<Action> a <thing>".
_ACTION_SUMMARIES = {
    "mark-uncollectible": "Mark {a} {thing} uncollectible",
    "upcoming-invoice": "Preview the upcoming invoice of {a} {thing}",
    "pdf": "Download {a} {thing} as PDF",
    "receipt": "Download the receipt of {a} {thing} as PDF",
    "quote": "Quote {a} {thing} for a quantity",
    "rotate-secret": "Rotate the signing secret of {a} {thing}",
    "test": "Send a test event to {a} {thing}",
    "pay": "Collect payment for {a} {thing}",
}


def _words(segment: str) -> str:
    return segment.replace("-", " ").replace("_", " ")


def _singular(segment: str) -> str:
    words = _words(segment)
    if words.endswith("ies"):
        return words[:-3] + "y"
    if words.endswith(("shes", "ches", "sses")):
        return words[:-2]
    if words.endswith("s") and not words.endswith("ss"):
        return words[:-1]
    return words


def _a(thing: str) -> str:
    return "an" if thing.startswith(_ARTICLE_AN) and not thing.startswith(("us", "un", "uni")) else "a"


# Where the path alone does not say what the operation does.
SUMMARY_OVERRIDES = {
    "POST /control-plane/events": "Receive a control-plane event",
    "GET /events": "List billing events (the outbox)",
    "GET /events/{event_id}": "Retrieve a billing event",
    "POST /events": "Ingest usage events",
    "POST /events/billing-events": "Ingest usage in the reference pipeline's shape",
    "DELETE /usage": "Cancel usage events",
    "GET /usage/{meter_id}": "Retrieve a customer's usage of a meter",
    "POST /invoices": "Create a manual invoice",
    "POST /customers/{customer_id}/balance-transactions": "Adjust the balance of a customer",
    "POST /customers/{customer_id}/users": "Add a user to a customer",
    "GET /webhook-endpoints/{endpoint_id}/deliveries": "List the deliveries of a webhook endpoint",
    "POST /webhook-endpoints/{endpoint_id}/resend": "Resend events to a webhook endpoint",
    "POST /customers/{customer_id}/purge": "Purge a deleted customer's personal data",
    "POST /customers/{customer_id}/restore": "Restore a deleted customer",
}
TAG_OVERRIDES = {"POST /events": "Usage events", "POST /events/billing-events": "Usage events"}


def _key(method: str, path: str) -> str:
    return f"{method} {path.removeprefix('/api/v1')}"


def tag_for(path: str, method: str = "GET") -> str:
    """One tag per resource: `/api/v1/invoice-items/{id}` is "Invoice items"."""
    if _key(method, path) in TAG_OVERRIDES:
        return TAG_OVERRIDES[_key(method, path)]
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    parts = parts[2:] if parts[:2] == ["api", "v1"] else parts
    if len(parts) > 1 and parts[1] in _NESTED_TAGS:
        return _NESTED_TAGS[parts[1]]
    head = parts[0] if parts else "api"
    return _words(head).capitalize()


def summary_for(method: str, path: str) -> str:
    """A summary read off the method and the path: "List invoices", "Cancel a subscription"."""
    if _key(method, path) in SUMMARY_OVERRIDES:
        return SUMMARY_OVERRIDES[_key(method, path)]
    segments = [p for p in path.split("/") if p][2:]
    literal = [(i, s) for i, s in enumerate(segments) if not s.startswith("{")]
    has_id = segments[-1].startswith("{")
    last = literal[-1][1]
    if len(literal) == 1 or (len(literal) == 2 and literal[1][1] in _NESTED_TAGS and not has_id):
        if len(literal) == 2:  # /customers/{id}/users: a collection under its parent
            parent, child = _singular(literal[0][1]), _words(last)
            verbs = {
                "GET": f"List the {child} of {_a(parent)} {parent}",
                "POST": f"Add to the {child} of {_a(parent)} {parent}",
            }
            if last == "balance":
                return f"Retrieve the balance of {_a(parent)} {parent}"
            return verbs.get(method, f"{method.title()} the {child} of {_a(parent)} {parent}")
        thing = _singular(last)
        if has_id:
            return {
                "GET": f"Retrieve {_a(thing)} {thing}",
                "PATCH": f"Update {_a(thing)} {thing}",
                "PUT": f"Replace {_a(thing)} {thing}",
                "DELETE": f"Delete {_a(thing)} {thing}",
            }.get(method, f"{method.title()} {_a(thing)} {thing}")
        return {
            "GET": f"List {_words(last)}",
            "POST": f"Create {_a(thing)} {thing}",
            "DELETE": f"Delete {_words(last)}",
        }.get(method, f"{method.title()} {_words(last)}")
    # An action on one object: /subscriptions/{id}/cancel
    thing = _singular(literal[-2][1]) if len(literal) >= 2 else _singular(last)
    template = _ACTION_SUMMARIES.get(last, "")
    if template:
        return template.format(a=_a(thing), thing=thing)
    if not segments[-2].startswith("{"):  # a collection below another: /meter-mappings/x/y
        return f"{method.title()} {_words(last)}"
    if last.endswith("s") and not last.endswith("ss"):  # a collection of one object: /customers/{id}/portal-sessions
        child = _singular(last)
        if method == "GET":
            return f"List the {_words(last)} of {_a(thing)} {thing}"
        return f"Create {_a(child)} {child} for {_a(thing)} {thing}"
    return f"{_words(last).capitalize()} {_a(thing)} {thing}"


def _own_doc(view_class: type, handler: object) -> str:
    """The docstring written for this view or handler, never one inherited from the API base classes."""
    from billing_site.api import ApiView  # local: billing_site.api imports this module's neighbours

    doc = inspect.getdoc(handler) if handler is not None and "__doc__" in vars(handler) and handler.__doc__ else ""
    if doc:
        return doc
    for klass in view_class.__mro__:
        if klass is ApiView or not issubclass(klass, ApiView):
            break
        if vars(klass).get("__doc__"):
            return inspect.cleandoc(vars(klass)["__doc__"])
    return ""


def _tenant_note(view: object, method: str) -> str:
    access = getattr(view, "tenant_access", {}).get(method)
    if access == TENANT_SCOPED:
        return (
            "Tenant-bound tokens: limited to their own customer; another tenant's objects answer 404 "
            "`resource_missing`, lists hold only their own."
        )
    if access == OPERATORS_ONLY:
        return "Tenant-bound tokens: refused (403 `operator_only`); operators only."
    return "Tenant-bound tokens: refused (403 `tenant_scope_unsupported`)."


class ErrorDetail(serializers.Serializer):
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorBody(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=[
            "invalid_request",
            "authentication",
            "permission",
            "not_found",
            "conflict",
            "rate_limited",
            "api_error",
        ]
    )
    code = serializers.CharField(help_text="Machine-readable: `parameter_invalid`, `resource_missing`, ...")
    message = serializers.CharField(help_text="For people; may change.")
    param = serializers.CharField(allow_null=True, help_text="The field or parameter at fault, when there is one.")
    errors = ErrorDetail(many=True, required=False, help_text="Every validation error (400s of validation).")
    request_id = serializers.CharField(required=False, help_text="500s only: quote it when reporting.")


class Error(serializers.Serializer):
    """The one error envelope of every 4xx and 5xx (billing_site/errors.py)."""

    error = ErrorBody()


_ERROR_DESCRIPTIONS = {
    "400": "Invalid request: a field or parameter is wrong (`param` names it), or the body is malformed.",
    "401": "No credential, or one that is not valid (`missing_api_key`, `invalid_api_key`, `token_expired`...).",
    "403": "The credential lacks the scope (`missing_scope`), or a tenant-bound token may not do this.",
    "404": "No such object (or another tenant's): `resource_missing`.",
    "405": "The route does not support this method: `method_not_allowed`.",
    "409": "The object's state does not allow it, a duplicate, or an Idempotency-Key conflict.",
    "413": "The request body is larger than MAX_REQUEST_BODY_BYTES: `body_too_large`.",
    "415": "The body is not JSON: `unsupported_media_type`.",
    "429": "Rate limited (`rate_limited`); retry after the `Retry-After` seconds.",
    "503": "A dependency is down (processor, identity provider keys); retry later.",
}
_ERROR_EXAMPLE = {
    "error": {
        "type": "invalid_request",
        "code": "parameter_invalid",
        "message": "limit: Ensure this value is less than or equal to 100.",
        "param": "limit",
    }
}


class BillingAutoSchema(AutoSchema):
    """Every operation gets a tag per resource, a summary, its own description (with the scope it needs and
    how tenant-bound tokens are treated) and its error responses, all referencing the `Error` envelope."""

    def get_tags(self) -> list[str]:
        return [tag_for(self.path, self.method)]

    def get_summary(self) -> str | None:
        return summary_for(self.method, self.path)

    def get_description(self) -> str:  # type: ignore[override]
        handler = getattr(type(self.view), self.method.lower(), None)
        return _own_doc(type(self.view), handler)

    def get_operation(self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any) -> Any:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        from billing_site.auth import required_scope

        scope = required_scope(self.view, self.method)
        notes = [f"Scope: `{scope}`." if scope else "", _tenant_note(self.view, self.method)]
        own = operation.get("description", "").strip()
        # The summary leads, so that operations sharing a view's docstring still each say what they do.
        lead = f"{operation['summary']}."
        operation["description"] = "\n\n".join(part for part in [lead, own, *notes] if part)
        error_ref = self.resolve_serializer(Error, "response").ref
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            responses.setdefault(status, {"description": _ERROR_DESCRIPTIONS[status]})
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "content" not in response:
                examples = self._error_examples(status)
                media: dict[str, Any] = {"schema": error_ref, **({"examples": examples} if examples else {})}
                response["content"] = {"application/json": media}
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        statuses = ["400", "401", "403", "405", "429"]
        if "{" in self.path:
            statuses.append("404")
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            statuses += ["404", "409", "413", "415"]
        statuses.append("503")
        return sorted(set(statuses))

    @staticmethod
    def _error_examples(status: str) -> dict[str, Any]:
        if status != "400":
            return {}
        return {"InvalidParameter": {"value": _ERROR_EXAMPLE, "summary": "A parameter out of range"}}
