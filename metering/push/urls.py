from django.urls import path

from metering.push import apis

urlpatterns = [
    path("meter-mappings", apis.MeterMappingListCreateApi.as_view(), name="meter-mapping-list"),
    path("meter-mappings/<str:mapping_id>", apis.MeterMappingDetailApi.as_view(), name="meter-mapping-detail"),
    path("usage-pushes", apis.UsagePushListApi.as_view(), name="usage-push-list"),
    path("usage-pushes/<str:push_id>", apis.UsagePushDetailApi.as_view(), name="usage-push-detail"),
]
