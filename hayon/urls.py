from django.contrib import admin
from django.urls import include, path, re_path
from django.views.defaults import page_not_found

from platforms.api import not_found as api_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("platforms.urls")),
    path("", include("accounts.urls")),
    path("", include("publishing.urls")),
    re_path(r"^api/", api_not_found),  # every unknown /api/ path answers JSON, not an HTML page
]


def handler404(request, exception):
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return page_not_found(request, exception)


