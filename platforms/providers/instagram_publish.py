"""Instagram publishing for the professional account linked to a connected Facebook Page.

"instagram" is a linked document that FacebookProvider fills (Provider.linked); this publisher
is offered by FacebookPublishing.publishers_for_linked and found by publishing_target("instagram").
It publishes with the Page token the Page's connection stored in the instagram document, and its
health is the Page's (publishing.interface.LinkedPublisher).

Docs: https://developers.facebook.com/docs/instagram-platform/content-publishing/ ,
/docs/instagram-platform/instagram-graph-api/reference/ig-user/media (`image_url`, `caption`,
`alt_text`, `is_carousel_item`, `media_type=CAROUSEL`, `children`; caption: 2,200 characters,
30 hashtags, 20 @ tags; JPEG only), /reference/ig-container (`status_code`: IN_PROGRESS,
FINISHED, ERROR, EXPIRED, PUBLISHED), /reference/ig-user/media_publish (`creation_id`),
/reference/ig-user/content_publishing_limit. Meta downloads each image from its URL: Hayon
serves a signed, expiring JPEG copy (publishing/signed_media.py), so PUBLIC_URL must be public.

Idempotency: the container id is stored in the handle before media_publish. A retry looks at
that container first: PUBLISHED means the earlier attempt went through (reported, not repeated);
FINISHED means it did not, and the same container is published. A container is never made twice
for one delivery unless Meta expired the first unpublished.
"""
from publishing import signed_media
from publishing.interface import ContentRejected, Handle, LinkedPublisher, Outgoing, Preview, Published, Rules, TextLimit

from .meta_publish import ContainerExpired, Graph, check_quota, object_id, permalink, wait_for_container

CAROUSEL_MAX = 10  # one image is a single post; 2-10 a carousel


def profile_url(doc: dict) -> str:
    handle = (doc.get("profile") or {}).get("handle") or ""
    return f"https://www.instagram.com/{handle}/" if handle else "https://www.instagram.com/"


class InstagramPublisher(LinkedPublisher):
    # The feed crops to at most 4:5 and cuts a caption after about 125 characters ("… more");
    # captions link nothing, only mentions and hashtags are marked.
    publish_preview = Preview(marking="tags", image_ratio=(4, 5), see_more_after=125)
    name = "instagram"
    label = "Instagram"
    publish_rules = Rules(
        text_limits=(
            TextLimit("code_points", 2200),
            TextLimit("hashtags", 30, unit="hashtags", rule="hashtags"),
            TextLimit("mentions", 20, unit="mentions", rule="mentions"),
        ),
        min_images=1,  # Instagram has no text-only post
        max_images=CAROUSEL_MAX,
        # Any stored type: Hayon sends a JPEG copy (Instagram takes JPEG only).
        image_types=("image/jpeg", "image/png", "image/webp", "image/gif"),
        # "can only publish 50 posts within a 24 hour moving period" (reference/ig-user/media_publish,
        # Jan 2025); the real figure is read at publish time (meta_publish.check_quota).
        daily_posts=50,
    )
    publish_idempotent = True  # the container id is stored before media_publish

    def graph(self, token: str) -> Graph:
        return self.parent.graph(token, self.label)

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        graph, user = self.graph(auth["pageToken"]), doc["platformId"]
        container = handle.data.get("container_id")
        if container:
            try:
                if _wait(graph, container) == "PUBLISHED":  # the earlier attempt's media_publish went through
                    return Published(remote_id=f"container:{container}", url=profile_url(doc))
            except ContainerExpired:
                container = None  # never published, and Meta dropped it: make another
        if not container:
            container = self._make_container(graph, user, post)
            handle.save(container_id=container)  # before media_publish: a retry publishes this one
            _wait(graph, container)
        media_id = object_id(graph.post(f"{user}/media_publish", final=True, creation_id=container), self.label)
        return Published(remote_id=media_id, url=permalink(graph, media_id, profile_url(doc)))

    def _make_container(self, graph: Graph, user: str, post: Outgoing) -> str:
        if not post.media:
            raise ContentRejected("Instagram needs at least one image.", code="media_required")
        check_quota(graph, f"{user}/content_publishing_limit")
        if len(post.media) == 1:
            return object_id(graph.post(f"{user}/media", final=False, caption=post.text or None,
                                        **_image(post.media[0])), self.label)
        children = []
        for item in post.media:
            child = object_id(graph.post(f"{user}/media", final=False, is_carousel_item="true", **_image(item)),
                              self.label)
            _wait(graph, child)  # an image Instagram cannot use fails here, with its reason
            children.append(child)
        return object_id(graph.post(f"{user}/media", final=False, media_type="CAROUSEL", children=",".join(children),
                                    caption=post.text or None), self.label)


def _image(item) -> dict:
    params = {"image_url": signed_media.signed_url(media_id=item.media_id, variant="jpeg")}
    if item.alt:
        params["alt_text"] = item.alt
    return params


def _wait(graph: Graph, container: str) -> str:
    # `status` holds the error subcode and its description when status_code is ERROR.
    return wait_for_container(graph, container, status_field="status_code", error_fields="status",
                              describe=lambda reply: str(reply.get("status") or "the image was refused"))

