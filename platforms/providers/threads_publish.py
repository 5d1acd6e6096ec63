"""Threads publishing, mixed into ThreadsProvider: containers, then threads_publish.

Docs: https://developers.facebook.com/docs/threads/posts (POST /{threads-user-id}/threads with
`media_type` TEXT/IMAGE/CAROUSEL, `text`, `image_url`, `alt_text`, `is_carousel_item`, `children`;
then POST /{threads-user-id}/threads_publish with `creation_id`), /docs/threads/troubleshooting
(GET /{container-id}?fields=status,error_message: IN_PROGRESS, FINISHED, PUBLISHED, ERROR,
EXPIRED; GET /{threads-user-id}/threads_publishing_limit: 250 posts per 24 hours),
shared/platform-apis.md §3. Text: 500 characters with emoji counted in UTF-8 bytes
(publishing/text.py threads_length). Carousel: 2-20 items. Meta downloads each image from its
URL: Hayon serves a signed, expiring copy (publishing/signed_media.py), so PUBLIC_URL must be public.

Idempotency as Instagram's (instagram_publish.py): the container id is stored before
threads_publish, and a retry looks at that container (PUBLISHED: done; FINISHED: publish it).
"""
from django.conf import settings

from publishing import signed_media
from publishing.interface import Handle, Outgoing, Preview, Published, Publisher, Rules, TextLimit

from .meta_publish import ContainerExpired, Graph, check_quota, object_id, permalink, wait_for_container

DIRECT_TYPES = ("image/jpeg", "image/png")  # Threads takes JPEG and PNG; others are sent as JPEG copies


def profile_url(doc: dict) -> str:
    handle = (doc.get("profile") or {}).get("handle") or ""
    return f"https://www.threads.net/@{handle}" if handle else "https://www.threads.net/"


class ThreadsPublishing(Publisher):
    # Threads shows all 500 characters, links and tags marked, images in their own shape.
    publish_preview = Preview(marking="links", image_ratio=None)
    publish_rules = Rules(
        text_limits=(TextLimit("threads", 500),),
        max_images=20,  # a carousel takes 2-20; Hayon's composer offers 4
        image_types=("image/jpeg", "image/png", "image/webp", "image/gif"),
        daily_posts=250,  # threads_publishing_limit: 250 posts per 24 hours
    )
    publish_idempotent = True  # the container id is stored before threads_publish

    def publish_graph(self, token: str) -> Graph:
        return Graph(label=self.label, base=f"{settings.THREADS_GRAPH_URL.rstrip('/')}/v1.0", token=token)

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        graph, user = self.publish_graph(auth["accessToken"]), doc["platformId"]
        container = handle.data.get("container_id")
        if container:
            try:
                if _wait(graph, container) == "PUBLISHED":  # the earlier threads_publish went through
                    return Published(remote_id=f"container:{container}", url=profile_url(doc))
            except ContainerExpired:
                container = None  # never published, and Meta dropped it: make another
        if not container:
            container = _make_container(graph, user, post)
            handle.save(container_id=container)  # before threads_publish: a retry publishes this one
            _wait(graph, container)
        media_id = object_id(graph.post(f"{user}/threads_publish", final=True, creation_id=container), self.label)
        return Published(remote_id=media_id, url=permalink(graph, media_id, profile_url(doc)))


def _make_container(graph: Graph, user: str, post: Outgoing) -> str:
    check_quota(graph, f"{user}/threads_publishing_limit")
    if not post.media:
        return object_id(graph.post(f"{user}/threads", final=False, media_type="TEXT", text=post.text), graph.label)
    if len(post.media) == 1:
        return object_id(graph.post(f"{user}/threads", final=False, media_type="IMAGE", text=post.text or None,
                                    **_image(post.media[0])), graph.label)
    children = []
    for item in post.media:
        child = object_id(graph.post(f"{user}/threads", final=False, media_type="IMAGE", is_carousel_item="true",
                                     **_image(item)), graph.label)
        _wait(graph, child)  # an image Threads cannot use fails here, with its reason
        children.append(child)
    return object_id(graph.post(f"{user}/threads", final=False, media_type="CAROUSEL", children=",".join(children),
                                text=post.text or None), graph.label)


def _image(item) -> dict:
    variant = "" if item.mime_type in DIRECT_TYPES else "jpeg"
    params = {"image_url": signed_media.signed_url(media_id=item.media_id, variant=variant)}
    if item.alt:
        params["alt_text"] = item.alt
    return params


def _wait(graph: Graph, container: str) -> str:
    return wait_for_container(graph, container, status_field="status", error_fields="error_message",
                              describe=lambda reply: str(reply.get("error_message") or "UNKNOWN"))
