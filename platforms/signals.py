from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import oauth_state


@receiver(user_logged_out)
def drop_pending_flows(sender, request, **kwargs):
    """Signing out abandons every flow this browser started (security case 38)."""
    if request is not None:
        oauth_state.drop_for_session(request)
