from django.urls import path

from customers import apis

urlpatterns = [
    path("customers", apis.CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("customers/<str:customer_id>/restore", apis.CustomerRestoreApi.as_view(), name="customer-restore"),
    path("customers/<str:customer_id>/purge", apis.CustomerPurgeApi.as_view(), name="customer-purge"),
    path("customers/<str:customer_id>/users", apis.CustomerUserListCreateApi.as_view(), name="customer-users"),
    path("users/<str:user_id>", apis.UserDetailApi.as_view(), name="user-detail"),
    path("users/<str:user_id>/disable", apis.UserDisableApi.as_view(), name="user-disable"),
    path("users/<str:user_id>/enable", apis.UserEnableApi.as_view(), name="user-enable"),
    path("test-clocks", apis.TestClockListCreateApi.as_view(), name="test-clock-list"),
    path("test-clocks/<str:clock_id>", apis.TestClockDetailApi.as_view(), name="test-clock-detail"),
    path("control-plane/events", apis.ControlPlaneEventApi.as_view(), name="control-plane-events"),
]
