"""A logging filter that keeps secrets out of every log line.

Request loggers (runserver's `django.server`, gunicorn) print full URLs, and an OAuth callback
URL carries a `code` and a `state` in its query string. We redact every query string and any
value that looks like a bearer credential before a record reaches a handler.
"""
import logging
import logging.config
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


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG: apply LOGGING, then put the filter on every handler that lacks it.

    Handlers configured outside LOGGING (Django's defaults, gunicorn's access and error logs, which
    gunicorn sets up before Django starts) would otherwise print full URLs. dictConfig cannot add a
    filter to gunicorn's loggers without removing their handlers, so it is added here instead.
    """
    logging.config.dictConfig(config)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
