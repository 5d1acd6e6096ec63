"""A logging filter that keeps secrets out of every log line.

Request loggers (runserver's `django.server`, gunicorn) print full URLs, and an OAuth callback
URL carries a `code` and a `state` in its query string. We redact every query string and any
value that looks like a bearer credential before a record reaches a handler.
"""
import logging
import re

_QUERY = re.compile(r"\?[^\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer|oauth)\s+[^\s\"',]+")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization[:=]\s*)(?!bearer\b|oauth\b)[^\s\"',]+")


def redact(text: str) -> str:
    text = _QUERY.sub("?[redacted]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    return _AUTH_HEADER.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix here
            return True
        record.msg, record.args = redact(message), ()
        return True
