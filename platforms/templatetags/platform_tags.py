from django import template

from ..documents import parse_iso

register = template.Library()


@register.filter
def moment(value):
    """An ISO 8601 string from a document, as a datetime for the `date`/`timesince` filters."""
    try:
        return parse_iso(value)
    except (TypeError, ValueError):
        return None
