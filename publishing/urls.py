from django.urls import path

from . import api, page_urls
from . import signed_media

urlpatterns = [
    path("api/media", api.upload_media, name="api_media"),
    path("api/posts", api.posts, name="api_posts"),
    path("api/posts/<int:post_id>", api.post_detail, name="api_post"),
    path("api/posts/<int:post_id>/retry", api.retry, name="api_post_retry"),
    path("api/posts/<int:post_id>/publish-now", api.publish_now, name="api_post_publish_now"),
    path("api/posts/<int:post_id>/targets/<str:platform>/published", api.mark_published, name="api_post_published"),
    path("media/s/<str:token>", signed_media.serve, name="signed_media"),  # signed, expiring (signed_media.py)
]
urlpatterns += page_urls.urlpatterns  # the composer and post pages
