from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"

    def ready(self) -> None:
        from catalog import webhook_objects

        webhook_objects.register()

        # Metering keeps hourly per-event statistics for the percentage prices with bounds; it cannot
        # import catalog (imports point down), so catalog tells it which prices exist.
        from catalog.selectors import percentage_classifier_rows
        from metering.class_stats import register_classifier_source

        register_classifier_source(percentage_classifier_rows)
