from django.urls import path

from catalog import apis

urlpatterns = [
    path("products", apis.ProductListCreateApi.as_view(), name="product-list"),
    path("products/<str:product_id>", apis.ProductDetailApi.as_view(), name="product-detail"),
    path("prices", apis.PriceListCreateApi.as_view(), name="price-list"),
    path("prices/<str:price_id>", apis.PriceDetailApi.as_view(), name="price-detail"),
    path("prices/<str:price_id>/quote", apis.PriceQuoteApi.as_view(), name="price-quote"),
    path("coupons", apis.CouponListCreateApi.as_view(), name="coupon-list"),
    path("coupons/<str:coupon_id>", apis.CouponDetailApi.as_view(), name="coupon-detail"),
    path("features", apis.FeatureListCreateApi.as_view(), name="feature-list"),
    path("features/<str:feature_id>", apis.FeatureDetailApi.as_view(), name="feature-detail"),
    path("feature-attachments", apis.FeatureAttachmentListCreateApi.as_view(), name="feature-attachment-list"),
    path(
        "feature-attachments/<str:attachment_id>",
        apis.FeatureAttachmentDetailApi.as_view(),
        name="feature-attachment-detail",
    ),
]
