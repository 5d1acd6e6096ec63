"""Re-encrypt every stored secret under the newest key of TOKEN_ENCRYPTION_KEYS.

Rotation: put a new key first in TOKEN_ENCRYPTION_KEYS (keep the old ones after it), run this
command, then remove the old keys. Fails loudly, changing nothing, if any secret is unreadable.
"""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from platforms import crypto
from platforms.models import PLATFORM_FIELDS, MastodonApp, PendingFlow, SocialAccount


class Command(BaseCommand):
    help = "Re-encrypt all platform secrets under the newest TOKEN_ENCRYPTION_KEYS key."

    @transaction.atomic
    def handle(self, *args, **options):
        try:
            documents = self._rotate_documents()
            apps = self._rotate_column(MastodonApp.objects.select_for_update(), "client_secret")
            flows = self._rotate_column(PendingFlow.objects.select_for_update(), "payload")
        except crypto.SecretsUnreadable as exc:
            raise CommandError(f"{exc}; nothing was changed. Is an old key missing from the list?") from None
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {documents} connections, {apps} app registrations, {flows} pending flows.")
        )

    def _rotate_documents(self) -> int:
        count = 0
        for account in SocialAccount.objects.select_for_update().order_by("pk"):
            for name in PLATFORM_FIELDS:
                doc = account.document(name)
                if doc.get("auth"):
                    doc["auth"] = crypto.rotate(doc["auth"])
                    account.set_document(name, doc)
                    count += 1
            account.save(update_fields=[*PLATFORM_FIELDS])
        return count

    def _rotate_column(self, queryset, field: str) -> int:
        count = 0
        for row in queryset:
            setattr(row, field, crypto.rotate(getattr(row, field)))
            row.save(update_fields=[field])
            count += 1
        return count
