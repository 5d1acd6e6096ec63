"""The JSON API for posts and media: same envelope, authentication and errors as /api/platform/."""
import json

from platforms.api import endpoint, fail, reply
from platforms.documents import iso

from . import media, services
from .models import Post

MAX_TEXT = 10_000  # far above every platform's limit; a bigger body is a mistake, not a post
MAX_LISTED = 50


@endpoint("POST")
def upload_media(request):
    upload = request.FILES.get("file")
    if upload is None:
        return fail("Send the image as the multipart field 'file'.", 400)
    try:
        item = services.store_media(user=request.user, upload=upload, alt=request.POST.get("alt", "")[:5000])
    except media.ImageRejected as exc:
        return fail(str(exc), 422)
    return reply(media_json(item), message="Image stored.", status=201)


@endpoint("GET", "POST")
def posts(request):
    if request.method == "GET":
        listed = Post.objects.filter(user=request.user).prefetch_related("deliveries")[:MAX_LISTED]
        return reply([post_json(post) for post in listed])
    body, error = _post_body(request)
    if error:
        return fail(error, 400)
    try:
        created = services.create_post(user=request.user, idempotency_key=request.headers.get("Idempotency-Key", "")[:255],
                                       **body)
    except services.Invalid as exc:
        return reply({"problems": [p.to_json() for p in exc.problems]}, message=str(exc), status=422, success=False)
    except services.KeyReused:
        return fail("This Idempotency-Key was already used with a different request.", 422)
    if created.replayed:
        return reply(post_json(created.post), message="This request was already received; here is its post.")
    response = reply(post_json(created.post), message="Queued for publishing.", status=202)
    response["Location"] = f"/api/posts/{created.post.pk}"
    return response


@endpoint("GET")
def post_detail(request, post_id):
    post = _own_post(request, post_id)
    return reply(post_json(post)) if post else fail("No such post.", 404)


@endpoint("POST")
def retry(request, post_id):
    post = _own_post(request, post_id)
    if post is None:
        return fail("No such post.", 404)
    ids = services.retry_post(post=post)
    message = "Queued again." if ids else "Nothing to retry: no account failed."
    return reply(post_json(Post.objects.prefetch_related("deliveries").get(pk=post.pk)), message=message)


@endpoint("POST")
def mark_published(request, post_id, platform):
    """`{"url": optional}`: the user checked a post that needs attention and it is there."""
    post = _own_post(request, post_id)
    if post is None:
        return fail("No such post.", 404)
    try:
        url = json.loads(request.body or b"{}").get("url", "")
        marked = services.mark_published(post=post, platform=platform, url=url if isinstance(url, str) else "")
    except (ValueError, AttributeError) as exc:
        return fail(str(exc) if isinstance(exc, ValueError) and "link" in str(exc) else "Send a JSON object.", 400)
    if not marked:
        return fail("That account's delivery is not waiting for an answer (only one that needs attention can be "
                    "marked as published).", 409)
    return reply(post_json(Post.objects.prefetch_related("deliveries").get(pk=post.pk)), message="Marked as published.")


def _own_post(request, post_id) -> Post | None:
    """The user's post; someone else's reads the same as one that does not exist."""
    return Post.objects.prefetch_related("deliveries").filter(pk=post_id, user=request.user).first()


def _post_body(request) -> tuple[dict, str]:
    """The fields of POST /api/posts, or a message saying what is malformed."""
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return {}, "The request body must be JSON."
    if not isinstance(data, dict):
        return {}, "The request body must be a JSON object."
    text, targets, media, overrides = data.get("text", ""), data.get("targets"), data.get("media", []), data.get("overrides", {})
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return {}, f"'text' must be a string of at most {MAX_TEXT:,} characters."
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        return {}, "'targets' must be a non-empty list of platform names, e.g. [\"bluesky\"]."
    if not isinstance(media, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in media):
        return {}, "'media' must be a list of media ids from POST /api/media."
    if not isinstance(overrides, dict) or not all(
        isinstance(o, dict) and isinstance(o.get("text", ""), str) and len(o.get("text", "")) <= MAX_TEXT
        for o in overrides.values()
    ):
        return {}, "'overrides' must look like {\"mastodon\": {\"text\": \"...\"}}."
    overrides = {name: {"text": o["text"]} for name, o in overrides.items() if "text" in o}
    return {"text": text, "targets": targets, "media": media, "overrides": overrides}, ""


def media_json(item) -> dict:
    return {"id": item.pk, "mimeType": item.mime_type, "width": item.width, "height": item.height,
            "size": item.size, "alt": item.alt}


def post_json(post: Post) -> dict:
    return {
        "id": post.pk,
        "text": post.text,
        "createdAt": iso(post.created_at),
        "targets": [
            {"platform": d.platform, "status": d.status, "url": d.url or None, "error": d.error or None,
             "attempts": d.attempts, "publishedAt": iso(d.published_at)}
            for d in sorted(post.deliveries.all(), key=lambda d: d.pk)
        ],
    }
