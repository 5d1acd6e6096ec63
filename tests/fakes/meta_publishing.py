"""Publishing as Meta plays it, for FakeFacebook (Page posts, Instagram) and FakeThreads.

Shaped like the documentation:
- Page posts: POST /{page-id}/feed (`message`, `link`, `attached_media[i]`) -> {"id": "{page}_{post}"};
  POST /{page-id}/photos (`url`, `caption`, `published`) -> {"id", "post_id"} (no post_id when
  unpublished). https://developers.facebook.com/docs/pages-api/posts
- Containers (Instagram /{ig-user-id}/media, Threads /{threads-user-id}/threads) -> {"id"}; the
  image is fetched from its URL when the container is made, as Meta does ("we cURL media used in
  publishing attempts"); GET /{container} answers IN_PROGRESS for the first `polls_in_progress`
  polls, then FINISHED, or ERROR with Meta's reason for an image it cannot use (not fetchable,
  not an image, Instagram: not JPEG, an aspect ratio out of range); PUBLISHED once published.
- Publish (/media_publish, /threads_publish `creation_id`) -> {"id": media id}; a container not
  FINISHED is refused (IG 9007/2207027 "not ready"), and publishing one twice is refused too.
- Quotas: /content_publishing_limit, /threads_publishing_limit ->
  {"data": [{"quota_usage", "config": {"quota_total", "quota_duration"}}]}.
- GET /{media-id}?fields=permalink -> {"permalink", "id"}.

`faults[endpoint]` (endpoint: "feed", "photos", "media", "media_publish", "threads",
"threads_publish") holds what the next calls do instead: a Reply answered without doing
anything, or ("slow", seconds): do it, then answer that much later (a timeout after acceptance).
"""
import io
import itertools
import json
import time
from dataclasses import dataclass, field

import requests
from PIL import Image

from .server import Reply

IG_RATIO = (4 / 5, 1.91)  # IG User Media reference: aspect ratio between 4:5 and 1.91:1
THREADS_MAX_RATIO = 10  # Threads media specifications: up to 10:1
_ids = itertools.count(17_900_000_000_000_001)


def new_id() -> str:
    return str(next(_ids))


@dataclass
class Container:
    id: str
    owner: str
    params: dict
    error: str = ""  # set when the fetched image cannot be used
    polls: int = 0
    published_as: str = ""
    children: list = field(default_factory=list)


class MetaPublishing:
    """Mixed into a fake Meta server; `flavour` is "instagram" or "threads" for the container calls."""

    polls_in_progress = 2

    def init_publishing(self):
        self.containers: dict[str, Container] = {}
        self.published: list[dict] = []  # what followers see: {"id", "owner", "text", "images", "kind"}
        self.publish_calls: list[str] = []  # creation_id of every publish call, accepted or not
        self.fetched: list[tuple[str, int, str]] = []  # (url, HTTP status, content type) of every image fetch
        self.faults: dict[str, list] = {}
        self.quota_used, self.quota_total = 0, 250
        self.unpublished_photos: dict[str, dict] = {}  # Page photos uploaded with published=false

    # -- faults ------------------------------------------------------------------------------
    def _fault(self, endpoint: str):
        queue = self.faults.get(endpoint) or []
        return queue.pop(0) if queue else None

    def _run(self, endpoint: str, action):
        fault = self._fault(endpoint)
        if isinstance(fault, Reply):
            return fault
        reply = action()
        if isinstance(fault, tuple) and fault[0] == "slow":
            time.sleep(fault[1])  # the work is done; the answer comes too late
        return reply

    # -- images --------------------------------------------------------------------------------
    def fetch_image(self, url: str, flavour: str) -> tuple[dict | None, str]:
        """Download the image as Meta does (no cookie, no session): (facts, "") or (None, reason)."""
        try:
            response = requests.get(url, timeout=10, allow_redirects=False)
        except requests.RequestException:
            self.fetched.append((url, 0, ""))
            return None, self._download_error(flavour)
        content_type = response.headers.get("Content-Type", "")
        self.fetched.append((url, response.status_code, content_type))
        if response.status_code != 200 or not content_type.startswith("image/"):
            return None, self._download_error(flavour)
        try:
            image = Image.open(io.BytesIO(response.content))
            image.load()
        except Exception:  # noqa: BLE001 -- whatever it is, it is not an image Meta can use
            return None, self._download_error(flavour)
        if flavour == "instagram" and image.format != "JPEG":
            return None, "ERROR: Only photo or video can be accepted as media type. (2207026)"
        ratio = image.width / image.height
        if flavour == "instagram" and not IG_RATIO[0] <= ratio <= IG_RATIO[1]:
            return None, (f"ERROR: The submitted image with aspect ratio ('{image.width}/{image.height}') cannot be "
                          "published. Please submit an image with a valid aspect ratio. (2207009)")
        if flavour == "threads" and max(ratio, 1 / ratio) > THREADS_MAX_RATIO:
            return None, "INVALID_ASPEC_RATIO"  # sic: Threads' troubleshooting page spells it so
        return {"format": image.format, "width": image.width, "height": image.height}, ""

    @staticmethod
    def _download_error(flavour: str) -> str:
        if flavour == "instagram":
            return "ERROR: Media download has failed. The media URI doesn't meet our requirements. (2207052)"
        return "FAILED_DOWNLOADING_IMAGE"

    # -- containers ----------------------------------------------------------------------------
    def create_container(self, owner: str, params: dict, flavour: str) -> Reply:
        def make():
            container = Container(new_id(), owner, dict(params))
            kind = params.get("media_type") or "IMAGE"
            if kind == "CAROUSEL":
                children = [c for c in str(params.get("children", "")).split(",") if c]
                low, high = (2, 10) if flavour == "instagram" else (2, 20)
                if not low <= len(children) <= high or any(c not in self.containers for c in children):
                    return self.error(100, message=f"Invalid parameter: a carousel takes {low}-{high} items of this account.")
                container.children = children
            elif params.get("image_url"):
                facts, reason = self.fetch_image(params["image_url"], flavour)
                container.params["image"] = facts
                container.error = reason
            elif flavour == "instagram" or kind != "TEXT":
                return self.error(100, message="The parameter image_url is required.")
            self.containers[container.id] = container
            return Reply(body={"id": container.id})

        return self._run("media" if flavour == "instagram" else "threads", make)

    def container_status(self, container_id: str, flavour: str) -> Reply:
        container = self.containers[container_id]
        container.polls += 1
        if container.published_as:
            status = "PUBLISHED"
        elif container.polls <= self.polls_in_progress:
            status = "IN_PROGRESS"
        else:
            status = "ERROR" if container.error else "FINISHED"
        if flavour == "instagram":
            body = {"id": container_id, "status_code": status}
            body["status"] = container.error if status == "ERROR" else status.title().replace("_", " ")
        else:
            body = {"id": container_id, "status": status}
            if status == "ERROR":
                body["error_message"] = container.error
        return Reply(body=body)

    def publish_container(self, owner: str, params: dict, flavour: str) -> Reply:
        creation_id = params.get("creation_id", "")
        self.publish_calls.append(creation_id)

        def publish():
            container = self.containers.get(creation_id)
            if container is None or container.owner != owner:
                return self.error(100, 33, f"Unsupported post request. Object with ID '{creation_id}' does not exist.")
            if container.published_as:
                return self.error(100, 2207008 if flavour == "instagram" else None, "The media has already been published.")
            if container.polls <= self.polls_in_progress or container.error:
                return self.error(9007, 2207027, "Media ID is not available")
            if self.quota_used >= self.quota_total:
                return self.error(4, 2207042, "You have reached the maximum number of posts that is allowed within 24 hours.")
            container.published_as = new_id()
            self.quota_used += 1
            images = [self.containers[c].params.get("image") for c in container.children] or [container.params.get("image")]
            self.published.append({"id": container.published_as, "owner": owner, "kind": container.params.get("media_type"),
                                   "text": container.params.get("caption") or container.params.get("text") or "",
                                   "images": [i for i in images if i], "container": container.id,
                                   "alt": [self.containers[c].params.get("alt_text") for c in container.children]
                                   or [container.params.get("alt_text")]})
            return Reply(body={"id": container.published_as})

        return self._run("media_publish" if flavour == "instagram" else "threads_publish", publish)

    def quota_reply(self) -> Reply:
        return Reply(body={"data": [{"quota_usage": self.quota_used,
                                     "config": {"quota_total": self.quota_total, "quota_duration": 86400}}]})

    def media_reply(self, media_id: str, flavour: str, username: str) -> Reply | None:
        post = next((p for p in self.published if p["id"] == media_id), None)
        if post is None:
            return None
        link = (f"https://www.instagram.com/p/{media_id[-8:]}/" if flavour == "instagram"
                else f"https://www.threads.net/@{username}/post/{media_id[-8:]}")
        return Reply(body={"id": media_id, "permalink": link})

    # -- Facebook Page posts -------------------------------------------------------------------
    def page_post(self, page: str, kind: str, params: dict) -> Reply:
        def post():
            if kind == "photos":
                facts, reason = self.fetch_image(params.get("url", ""), "facebook")
                if facts is None:
                    return self.error(324, message="Missing or invalid image file")
                photo = {"id": new_id(), "image": facts, "caption": params.get("caption", ""),
                         "alt": params.get("alt_text_custom", "")}
                if params.get("published", "true") == "false":
                    self.unpublished_photos[photo["id"]] = photo
                    return Reply(body={"id": photo["id"]})
                return Reply(body={"id": photo["id"], "post_id": self._page_post(page, photo["caption"], [photo])})
            attached = [params[k] for k in sorted(params) if k.startswith("attached_media[")]
            photos = []
            for item in attached:
                fbid = json.loads(item).get("media_fbid")
                if fbid not in self.unpublished_photos:
                    return self.error(100, message="Invalid parameter: attached_media")
                photos.append(self.unpublished_photos.pop(fbid))
            if not photos and not params.get("message") and not params.get("link"):
                return self.error(100, message="(#100) Missing message or attachment.")
            post_id = self._page_post(page, params.get("message", ""), photos, link=params.get("link"))
            return Reply(body={"id": post_id})

        return self._run(kind, post)

    def _page_post(self, page: str, message: str, photos: list, link: str | None = None) -> str:
        post_id = f"{page}_{new_id()}"
        self.published.append({"id": post_id, "owner": page, "text": message, "images": [p["image"] for p in photos],
                                "alt": [p["alt"] for p in photos], "link": link})
        return post_id


class ThreadsPublishingRoutes(MetaPublishing):
    """FakeThreads' publishing paths (/v1.0/...), with the long-lived token of its one user."""

    def publishing_route(self, request) -> Reply | None:
        params = {**request.query, **request.form}
        path = request.path.removeprefix("/v1.0")
        user = f"/{self.user_id}"
        if not path.startswith(user + "/") and path.strip("/") not in self.containers and not self._is_media(path):
            return None
        refusal = self.grant_refusal(params.get("access_token", ""), "long")
        if refusal:
            return refusal
        if path == f"{user}/threads" and request.method == "POST":
            return self.create_container(self.user_id, params, "threads")
        if path == f"{user}/threads_publish" and request.method == "POST":
            return self.publish_container(self.user_id, params, "threads")
        if path == f"{user}/threads_publishing_limit":
            return self.quota_reply()
        if path.strip("/") in self.containers:
            return self.container_status(path.strip("/"), "threads")
        return self.media_reply(path.strip("/"), "threads", "fakethreads")

    def _is_media(self, path: str) -> bool:
        return any(p["id"] == path.strip("/") for p in self.published)


class FacebookPublishingRoutes(MetaPublishing):
    """FakeFacebook's Page posts and its Page's Instagram account (17841401, linked to Page 101)."""

    instagram_of = {"17841401": "101"}

    def publishing_route(self, request, path: str, params: dict, token: str) -> Reply | None:
        parts = path.strip("/").split("/")
        owner = parts[0]
        page = self.instagram_of.get(owner, owner)
        known = (len(parts) == 2 and (owner in self.instagram_of or owner.startswith("10"))) or (
            len(parts) == 1 and (owner in self.containers or any(p["id"] == owner for p in self.published)))
        if not known:
            return None
        if len(parts) == 1:  # a container or a published media: the token must be a Page token
            refusal = self.grant_refusal(token, "page")
            if refusal:
                return refusal
            if owner in self.containers:
                return self.container_status(owner, "instagram")
            return self.media_reply(owner, "instagram", "fakebakery.ig")
        refusal = self.grant_refusal(token, "page")
        if refusal:
            return refusal
        if self.tokens[token].page != page:
            return self.error(200, message="(#200) The user hasn't authorized the application to perform this action")
        edge = parts[1]
        if owner in self.instagram_of:
            if edge == "media" and request.method == "POST":
                return self.create_container(owner, params, "instagram")
            if edge == "media_publish" and request.method == "POST":
                return self.publish_container(owner, params, "instagram")
            if edge == "content_publishing_limit":
                return self.quota_reply()
        elif edge in ("feed", "photos") and request.method == "POST":
            return self.page_post(owner, edge, params)
        return None
