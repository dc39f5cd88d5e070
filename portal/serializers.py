from __future__ import annotations

from rest_framework import serializers

from billing_site.api import InputSerializer


class PortalSessionCreateInput(InputSerializer):
    """No fields yet: the body may be empty or `{}`; an unknown field is a 400 naming it."""


class PortalSessionOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="portal_session")
    customer = serializers.CharField(source="customer_id")
    url = serializers.CharField(help_text="The portal for this customer: works until expires_at; shown once.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
