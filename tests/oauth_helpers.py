"""Driving an OAuth flow through Hayon the way a browser would."""
from urllib.parse import parse_qs, urlsplit


def query_of(url: str) -> dict:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def start(client, platform: str, **form) -> str:
    """Press Connect on the settings page; returns the authorization URL Hayon redirects to."""
    response = client.post(f"/settings/{platform}/connect", form)
    assert response.status_code == 302, response.content
    return response["Location"]


def callback(client, platform: str, **params):
    """The platform sends the browser back to the redirect URI its flow was begun with (one per
    Mastodon server); a state that names no flow of this platform goes to the plain callback."""
    return client.get(redirect_path(platform, params.get("state", "")), params)


def redirect_path(platform: str, state) -> str:
    import hashlib

    from platforms import crypto
    from platforms.models import PendingFlow

    nonce = state.split(".")[0] if isinstance(state, str) else ""
    row = PendingFlow.objects.filter(id=hashlib.sha256(nonce.encode()).hexdigest(), platform=platform).first()
    uri = crypto.decrypt(row.payload).get("redirect_uri", "") if row else ""
    return urlsplit(uri).path if uri else f"/api/platform/{platform}/callback"


def form_of(call) -> dict:
    """The form fields of a recorded `responses` call."""
    body = call.request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return {key: values[0] for key, values in parse_qs(body).items()}
