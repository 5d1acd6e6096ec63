"""The composer and post pages (publishing/views.py); the JSON API's routes are in urls.py."""
from django.urls import path

from . import views

urlpatterns = [
    path("compose", views.compose, name="compose"),
    path("compose/media/<int:media_id>", views.media_file, name="compose_media"),
    path("posts", views.posts, name="posts"),
    path("posts/<int:post_id>", views.post_page, name="post_page"),
    path("posts/<int:post_id>/status", views.post_status, name="post_status"),
    path("posts/<int:post_id>/retry", views.post_retry, name="post_retry"),
    path("posts/<int:post_id>/published/<str:platform>", views.post_mark_published, name="post_mark_published"),
    path("api/posts/validate", views.validate, name="api_posts_validate"),
]
