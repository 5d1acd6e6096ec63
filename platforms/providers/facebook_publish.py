"""Facebook Page publishing, mixed into FacebookProvider; it also offers the Instagram publisher
for the Page's linked Instagram account (instagram_publish.py).

Docs: https://developers.facebook.com/docs/pages-api/posts (POST /{page-id}/feed with `message`,
`link`; photos), /docs/graph-api/reference/page/photos (POST /{page-id}/photos with `url`,
`caption`, `published=false` for an unpublished photo), multi-photo posts: each photo uploaded
unpublished, then /feed with `attached_media[i]={"media_fbid": id}`. Every call carries the Page
token's appsecret_proof (meta.with_token).

No idempotency: Graph has no idempotency key, so an unknown outcome of the final call (a timeout
after it was sent) needs attention instead of a retry. Unpublished photo uploads come before the
final call and publish nothing: their failures are retried (NotAccepted). See meta_publish.py.
"""
import json
import re
from functools import cached_property

from django.conf import settings

from publishing import signed_media
from publishing.interface import Handle, Outgoing, Preview, Published, Publisher, Rules, TextLimit

from .instagram_publish import InstagramPublisher
from .meta_publish import Graph, object_id

MAX_TEXT = 63_206  # a Page post's message, in characters (Facebook's long-standing limit)
URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
MAX_PHOTOS = 10  # Hayon composes at most 4; a multi-photo post takes more


def post_url(post_id: str) -> str:
    # Graph post ids are "{page-id}_{post-id}"; facebook.com/<that id> opens the post (and the
    # `permalink_url` field says the same, at the cost of another call).
    return f"https://www.facebook.com/{post_id}"


def first_link(message: str) -> str | None:
    """The first URL in the text, sent as `link` so the post carries its preview card."""
    found = URL.search(message)
    return found.group(0).rstrip(".,;:!?)]}'\"") if found else None


class FacebookPublishing(Publisher):
    # A Page post shows about 480 characters before "See more"; photos keep their own shape.
    publish_preview = Preview(marking="links", image_ratio=None, see_more_after=480)
    publish_rules = Rules(
        text_limits=(TextLimit("code_points", MAX_TEXT),),
        max_images=MAX_PHOTOS,
        image_types=("image/jpeg", "image/png", "image/gif", "image/webp"),
    )
    publish_idempotent = False  # Graph has no idempotency key

    @cached_property
    def publishers_for_linked(self) -> dict:
        """The Page's linked Instagram account is a publishing target of its own (interface.LinkedPublisher)."""
        return {"instagram": InstagramPublisher(self)}

    def graph(self, token: str, label: str = "") -> Graph:
        base = f"{settings.FACEBOOK_GRAPH_URL.rstrip('/')}/{settings.FACEBOOK_GRAPH_VERSION}"
        return Graph(label=label or self.label, base=base, token=token, app_secret=settings.FACEBOOK_APP_SECRET)

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        graph, page = self.graph(auth["pageToken"]), doc["platformId"]
        if not post.media:
            params = {"message": post.text, "link": first_link(post.text)}
            return _published(object_id(graph.post(f"{page}/feed", final=True, **params), self.label))
        if len(post.media) == 1:
            reply = graph.post(f"{page}/photos", final=True, **_photo(post.media[0], caption=post.text))
            return _published(object_id(reply, self.label, "post_id" if reply.get("post_id") else "id"))
        photos = [object_id(graph.post(f"{page}/photos", final=False, published="false", **_photo(item)), self.label)
                  for item in post.media]
        attached = {f"attached_media[{i}]": json.dumps({"media_fbid": fbid}) for i, fbid in enumerate(photos)}
        reply = graph.post(f"{page}/feed", final=True, message=post.text or None, **attached)
        return _published(object_id(reply, self.label))


def _photo(item, *, caption: str | None = None) -> dict:
    params = {"url": signed_media.signed_url(media_id=item.media_id)}
    if caption:
        params["caption"] = caption
    if item.alt:
        params["alt_text_custom"] = item.alt
    return params


def _published(post_id: str) -> Published:
    return Published(remote_id=post_id, url=post_url(post_id))
