"""The admin dashboard's URL, included by the root URL conf (by dotted string) before admin's own."""

from django.contrib import admin
from django.urls import path

from payments.admin import dashboard_view

urlpatterns = [path("", admin.site.admin_view(dashboard_view), name="billing-admin-dashboard")]
