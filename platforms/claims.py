"""Which Hayon user holds a platform account, guaranteed by a unique row (models.AccountClaim).

Called by services inside the transaction that stores or forgets a connection, so the claim and
the document commit together. Two users claiming one account at once: the database lets one
insert through and the other sees the winner's row (PostgreSQL makes it wait for the winner's
commit; SQLite's write lock serialises the two transactions).
"""
from django.db import IntegrityError, transaction

from .models import AccountClaim, SocialAccount


def take(*, user, platform: str, account_key: str) -> bool:
    """Claim the account for `user` (in the caller's transaction); False if another user holds it."""
    claim = AccountClaim.objects.select_for_update().filter(platform=platform, account_key=account_key).first()
    if claim is None:
        try:
            with transaction.atomic():  # a savepoint: a lost race must not end the caller's transaction
                AccountClaim.objects.create(platform=platform, account_key=account_key, user=user)
            return True
        except IntegrityError:
            claim = AccountClaim.objects.select_for_update().get(platform=platform, account_key=account_key)
    if claim.user_id == user.pk:
        return True
    if _still_connected(claim):
        return False
    # Its holder no longer has the account connected (forgotten by a path that kept the claim,
    # such as Meta's data deletion): the claim is stale, and passes to this user.
    claim.user = user
    claim.save(update_fields=["user"])
    return True


def give_up(*, user, platform: str, account_key: str | None) -> None:
    if account_key:
        AccountClaim.objects.filter(platform=platform, account_key=account_key, user=user).delete()


def _still_connected(claim: AccountClaim) -> bool:
    return SocialAccount.objects.filter(
        user_id=claim.user_id, **{f"{claim.platform}__connected": True, f"{claim.platform}__accountKey": claim.account_key}
    ).exists()
