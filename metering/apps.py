from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"

    def ready(self) -> None:
        from metering import control_plane, webhook_objects

        webhook_objects.register()
        # customers receives control-plane events but sits below us: ingestUsage is ours to handle.
        control_plane.register()
