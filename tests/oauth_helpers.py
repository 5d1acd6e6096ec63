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
    return client.get(f"/api/platform/{platform}/callback", params)


def form_of(call) -> dict:
    """The form fields of a recorded `responses` call."""
    body = call.request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return {key: values[0] for key, values in parse_qs(body).items()}
