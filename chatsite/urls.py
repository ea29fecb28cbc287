from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from conversations import views_usage

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("chat/", include("conversations.urls")),
    path("usage/", views_usage.usage_page, name="usage"),
    path("api/v1/", include("conversations.api.urls")),
]
