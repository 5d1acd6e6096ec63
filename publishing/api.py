"""The JSON API for posts and media: same envelope, authentication and errors as /api/platform/."""
import json

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from platforms.api import endpoint, fail, reply
from platforms.documents import iso

from . import media, scheduling, services
from .models import Post

MAX_TEXT = 10_000  # far above every platform's limit; a bigger body is a mistake, not a post
MAX_LISTED = 50
MAX_IN_RANGE = 500  # GET /api/posts?from=&to= (a calendar month of a busy account)


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
        if "from" in request.GET or "to" in request.GET:
            return _posts_in_range(request)
        listed = Post.objects.filter(user=request.user).prefetch_related("deliveries")[:MAX_LISTED]
        return reply([post_json(post) for post in listed])
    body, error = _post_body(request)
    if error:
        return fail(error, 400)
    try:
        scheduled_at = _scheduled_at(request)
    except scheduling.ScheduleError as exc:
        return fail(str(exc), 422)
    try:
        created = services.create_post(user=request.user, idempotency_key=request.headers.get("Idempotency-Key", "")[:255],
                                       scheduled_at=scheduled_at, **body)
    except services.Invalid as exc:
        return reply({"problems": [p.to_json() for p in exc.problems]}, message=str(exc), status=422, success=False)
    except services.KeyReused:
        return fail("This Idempotency-Key was already used with a different request.", 422)
    if created.replayed:
        return reply(post_json(created.post), message="This request was already received; here is its post.")
    if scheduled_at is not None:
        message = " ".join([f"Scheduled for {iso(scheduled_at)}.", *created.warnings])
        response = reply({**post_json(created.post), "warnings": list(created.warnings)}, message=message, status=202)
        response["Location"] = f"/api/posts/{created.post.pk}"
        return response
    response = reply(post_json(created.post), message="Queued for publishing.", status=202)
    response["Location"] = f"/api/posts/{created.post.pk}"
    return response


@endpoint("GET", "PATCH", "DELETE")
def post_detail(request, post_id):
    post = _own_post(request, post_id)
    if post is None:
        return fail("No such post.", 404)
    if request.method == "PATCH":
        return _edit(request, post)
    if request.method == "DELETE":
        return _cancel(post)
    return reply(post_json(post))


def _edit(request, post: Post):
    """PATCH: any of text, media, targets, overrides, scheduledAt, while no delivery has started."""
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return fail("The request body must be JSON.", 400)
    if not isinstance(data, dict):
        return fail("The request body must be a JSON object.", 400)
    current = {"text": post.text, "targets": [d.platform for d in post.deliveries.all()],
               "media": [m.pk for m in post.ordered_media()], "overrides": post.overrides}
    body, error = _fields({**current, **{k: v for k, v in data.items() if k in current}})
    if error:
        return fail(error, 400)
    changes = {key: body[key] for key in current if key in data}
    try:
        if "scheduledAt" in data:
            changes["scheduled_at"] = scheduling.parse_scheduled_at(data["scheduledAt"], now=timezone.now())
        edited = services.update_post(post=post, **changes)
    except scheduling.ScheduleError as exc:
        return fail(str(exc), 422)
    except services.NotEditable as exc:
        return fail(str(exc), 409)
    except services.Invalid as exc:
        return reply({"problems": [p.to_json() for p in exc.problems]}, message=str(exc), status=422, success=False)
    fresh = Post.objects.prefetch_related("deliveries").get(pk=post.pk)
    message = " ".join(["Changed.", *edited.warnings])
    return reply({**post_json(fresh), "warnings": list(edited.warnings)}, message=message)


def _cancel(post: Post):
    """DELETE: cancels every delivery not started; one already started is left as it is (and named)."""
    cancelled, started = services.cancel_post(post=post)
    if not cancelled:
        return fail("Nothing to cancel: publishing this post has already started or it was cancelled before.", 409)
    message = "Cancelled."
    if started:
        message = (f"Cancelled for {', '.join(cancelled)}; publishing to {', '.join(started)} had already started "
                   "and was not cancelled.")
    return reply(post_json(Post.objects.prefetch_related("deliveries").get(pk=post.pk)), message=message)


@endpoint("POST")
def publish_now(request, post_id):
    """A post that missed its time (an outage longer than HAYON_LATE_GRACE): send it now."""
    post = _own_post(request, post_id)
    if post is None:
        return fail("No such post.", 404)
    if not services.publish_missed_now(post=post):
        return fail("Nothing to publish now: no account of this post missed its time.", 409)
    return reply(post_json(Post.objects.prefetch_related("deliveries").get(pk=post.pk)), message="Queued for publishing.")


def _scheduled_at(request):
    """`scheduledAt` of a POST body as UTC, None for a post sent now (the body was checked as JSON)."""
    value = json.loads(request.body or b"{}").get("scheduledAt")
    return None if value is None else scheduling.parse_scheduled_at(value, now=timezone.now())


def _posts_in_range(request):
    bounds = []
    for name in ("from", "to"):
        moment = parse_datetime(request.GET.get(name, "").strip().replace(" ", "+"))  # a bare + in a URL is a space
        if moment is None or moment.tzinfo is None:
            return fail(f"'{name}' must be an ISO 8601 time with an offset, e.g. 2026-03-01T00:00:00Z.", 400)
        bounds.append(moment)
    if bounds[1] <= bounds[0]:
        return fail("'to' must be after 'from'.", 400)
    listed = services.posts_between(user=request.user, start=bounds[0], end=bounds[1]).prefetch_related("deliveries")
    return reply([post_json(post) for post in listed[:MAX_IN_RANGE]])


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
    return _fields(data)


def _fields(data: dict) -> tuple[dict, str]:
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
        "scheduledAt": iso(post.scheduled_at),  # null: sent at once
        "version": post.version,
        "targets": [target_json(d, scheduled=post.scheduled_at is not None)
                    for d in sorted(post.deliveries.all(), key=lambda d: d.pk)],
    }


def target_json(d, *, scheduled: bool) -> dict:
    found = {"platform": d.platform, "status": d.status, "url": d.url or None, "error": d.error or None,
             "attempts": d.attempts, "publishedAt": iso(d.published_at)}
    if scheduled:  # how late it started (after an outage, within HAYON_LATE_GRACE); null until it starts
        found["lateBySeconds"] = d.late_seconds
    return found
