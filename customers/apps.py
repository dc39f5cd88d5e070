from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        from billing_site.tenancy import tenant_resolver_register
        from customers.selectors import customer_id_for_tenant

        # The core binds tenant-scoped tokens to customers through this (it may not import us).
        tenant_resolver_register(customer_id_for_tenant)

        from customers import provider_events, webhook_objects
        from customers.control_plane import handlers as control_plane_handlers

        webhook_objects.register()
        provider_events.register()
        control_plane_handlers.register()
