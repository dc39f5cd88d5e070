from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"

    def ready(self) -> None:
        from metering import control_plane, webhook_objects

        webhook_objects.register()
        # customers receives control-plane events but sits below us: ingestUsage is ours to handle.
        control_plane.register()

        # Customers cannot import metering (imports point down), so the usage push's checks on billing
        # mode and provider customer id changes are registered with it here.
        from customers.hooks import check_register, on_billing_mode_change, on_provider_customer_id_change
        from metering.push.mappings import check_billing_mode_change, check_provider_customer_id_change

        check_register(on_billing_mode_change, check_billing_mode_change)
        check_register(on_provider_customer_id_change, check_provider_customer_id_change)
