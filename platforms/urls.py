from django.urls import path

from . import api, meta_deletion, oauth_client_views, views

urlpatterns = [
    path("settings", views.settings_page, name="settings"),
    path("settings/<str:platform>/connect", views.connect, name="platform_connect"),
    path("settings/<str:platform>/refresh", views.refresh, name="platform_refresh"),
    path("settings/<str:platform>/pick", views.pick, name="platform_pick"),
    path("settings/<str:platform>/choose", views.choose, name="platform_choose"),
    path("settings/<str:platform>/disconnect", views.disconnect, name="platform_disconnect"),
    path("api/platform/find", api.find, name="api_find"),
    # Bluesky sign-in: the client_id document and public keys an authorization server fetches.
    path("oauth/client-metadata.json", oauth_client_views.client_metadata, name="atproto_client_metadata"),
    path("oauth/jwks.json", oauth_client_views.jwks, name="atproto_jwks"),
    path("api/platform/facebook/data-deletion", meta_deletion.data_deletion, name="meta_deletion"),
    path("api/platform/facebook/data-deletion/<str:code>", meta_deletion.data_deletion_status,
         name="meta_deletion_status"),
    path("api/platform/threads/uninstall", meta_deletion.threads_uninstall, name="threads_uninstall"),
    path("api/platform/threads/data-deletion", meta_deletion.threads_data_deletion, name="threads_deletion"),
    path("api/platform/threads/data-deletion/<str:code>", meta_deletion.threads_deletion_status,
         name="threads_deletion_status"),
    path("api/platform/<str:platform>/connect", api.connect, name="api_connect"),
    path("api/platform/<str:platform>/callback", views.callback, name="platform_callback"),
    # One redirect URI per authorization server a user can choose (Mastodon): RFC 9700 §4.4.
    path("api/platform/<str:platform>/callback/<slug:callback_id>", views.callback, name="platform_callback_for"),
    path("api/platform/<str:platform>/refresh", api.refresh, name="api_refresh"),
    path("api/platform/<str:platform>/disconnect", api.disconnect, name="api_disconnect"),
]
