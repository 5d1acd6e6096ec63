from django.urls import path

from . import api, meta_deletion, views

urlpatterns = [
    path("settings", views.settings_page, name="settings"),
    path("settings/<str:platform>/connect", views.connect, name="platform_connect"),
    path("settings/<str:platform>/refresh", views.refresh, name="platform_refresh"),
    path("settings/<str:platform>/pick", views.pick, name="platform_pick"),
    path("settings/<str:platform>/choose", views.choose, name="platform_choose"),
    path("settings/<str:platform>/disconnect", views.disconnect, name="platform_disconnect"),
    path("api/platform/find", api.find, name="api_find"),
    path("api/platform/facebook/data-deletion", meta_deletion.data_deletion, name="meta_deletion"),
    path("api/platform/facebook/data-deletion/<str:code>", meta_deletion.data_deletion_status,
         name="meta_deletion_status"),
    path("api/platform/<str:platform>/connect", api.connect, name="api_connect"),
    path("api/platform/<str:platform>/callback", views.callback, name="platform_callback"),
    path("api/platform/<str:platform>/refresh", api.refresh, name="api_refresh"),
    path("api/platform/<str:platform>/disconnect", api.disconnect, name="api_disconnect"),
]
