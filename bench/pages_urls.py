"""Hayon's URLs plus two baselines for bench/pages.py: authenticate and read the user's row, nothing more.

The page baseline authenticates like /settings (session cookie), the API baseline like
/api/platform/find (Bearer token). Neither renders, decrypts or filters anything.
"""
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import path

from hayon.urls import urlpatterns as hayon_urlpatterns
from platforms.api import endpoint, reply
from platforms.models import SocialAccount


@login_required
def page_baseline(request):
    account = SocialAccount.objects.get(user=request.user)
    return HttpResponse(f"<p>{account.pk}</p>")


@endpoint("GET")
def api_baseline(request):
    account = SocialAccount.objects.get(user=request.user)
    return reply({"id": account.pk})


urlpatterns = [
    path("bench/baseline/page", page_baseline),
    path("bench/baseline/api", api_baseline),
    *hayon_urlpatterns,
]
