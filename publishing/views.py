"""The composer and the post pages. Thin: publishing/composer.py works out what they show."""
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.ratelimit import RateLimited
from platforms.api import endpoint, reply

from . import composer, services
from .models import MediaFile


@login_required
@require_http_methods(["GET", "POST"])
def compose(request):
    draft, problems, status = composer.Draft(), [], 200
    if request.method == "POST":
        draft = composer.Draft.from_form(request.POST)
        try:
            created = composer.publish(user=request.user, draft=draft)
            return redirect("post_page", created.post.pk)
        except services.Invalid as exc:
            problems, status = exc.problems, 422
        except services.KeyReused:  # Back after publishing, then edited: a new post, if the user confirms
            draft.key, status = composer.new_key(), 409
            messages.error(request, "This form was already published with other content. Publish again to make a new post.")
        except RateLimited as exc:
            messages.error(request, str(exc))
            status = 429
    return _composer(request, draft, problems, status=status)


def _composer(request, draft, problems, *, status):
    choices = composer.choices(request.user, text=draft.text, overrides=draft.overrides)
    general, by_target = composer.grouped(problems, shown=[c.name for c in choices if c.preview])
    context = {"draft": draft, "choices": choices, "media": composer.draft_media(request.user, draft),
               "general": general, "problems": by_target, "max_images": composer.MAX_IMAGES}
    return render(request, "publishing/compose.html", context, status=status)


@endpoint("POST")
def validate(request):
    """POST /api/posts/validate: the problems POST /api/posts would answer, and each preview."""
    try:
        draft = composer.Draft.from_json(json.loads(request.body or b"{}"))
    except ValueError:
        draft = composer.Draft.from_json({})
    problems, previews = composer.check(user=request.user, draft=draft)
    return reply({"problems": [p.to_json() for p in problems],
                  "previews": {name: preview.to_json() for name, preview in previews.items()}})


@login_required
@require_GET
def posts(request):
    return render(request, "publishing/posts.html", {"posts": composer.recent_posts(request.user)})


@login_required
@require_GET
def post_page(request, post_id):
    post = composer.own_post(request.user, post_id) or _missing()
    return render(request, "publishing/post.html", {"post": post, "state": composer.post_state(post),
                                                    "outcomes": composer.outcomes(post),
                                                    "media": post.ordered_media()})


@login_required
@require_GET
def post_status(request, post_id):
    """What post-status.js polls: each account's state and what to do about a failure."""
    post = composer.own_post(request.user, post_id) or _missing()
    response = JsonResponse(composer.post_state(post))
    patch_cache_control(response, no_store=True)
    return response


@login_required
@require_POST
def post_retry(request, post_id):
    post = composer.own_post(request.user, post_id) or _missing()
    ids = services.retry_post(post=post)
    messages.success(request, "Publishing again to the accounts that failed." if ids else "Nothing to retry.")
    return redirect("post_page", post.pk)


@login_required
@require_POST
def post_mark_published(request, post_id, platform):
    post = composer.own_post(request.user, post_id) or _missing()
    try:
        marked = services.mark_published(post=post, platform=platform, url=request.POST.get("url", ""))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        if marked:
            messages.success(request, "Marked as published.")
        else:
            messages.error(request, "Only an account whose post needs attention can be marked as published.")
    return redirect("post_page", post.pk)


@login_required
@require_GET
def media_file(request, media_id):
    """The user's own uploaded image, for the composer's and post page's previews."""
    item = MediaFile.objects.filter(pk=media_id, user=request.user).first() or _missing()
    response = FileResponse(item.file.open("rb"), content_type=item.mime_type)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _missing():
    raise Http404("No such post.")
