"""Keep every connection healthy: check each due one, renew what expires, record health.

The name is the documented one (cron lines use it); what it mostly does is check.

Run it from cron or a systemd timer (README, "Keeping connections healthy"). Only accounts
whose next check is due are touched, so running it often is cheap. Several copies may run at
once against PostgreSQL; on SQLite a second copy exits at once.
"""
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from platforms import upkeep
from platforms.providers import PROVIDERS

COLUMNS = {"ok": "ok", "renewed": "renewed", "expired": "expired", "revoked": "revoked", "error": "errors",
           "retrying": "retrying", "timed_out": "timed out", "superseded": "changed meanwhile", "deferred": "deferred"}


class Command(BaseCommand):
    help = "Check due platform connections, renew expiring credentials and record their health."

    def add_arguments(self, parser):
        names = [p.name for p in PROVIDERS]
        parser.add_argument("--platform", action="append", choices=names, default=[],
                            help="Only this platform (repeatable).")
        parser.add_argument("--user", action="append", default=[], help="Only this user: username or email (repeatable).")
        parser.add_argument("--concurrency", type=int, default=16,
                            help="Accounts checked at once (network-bound; default 16).")
        parser.add_argument("--processes", type=int, default=None,
                            help="Processes sharing the concurrency (PostgreSQL; default one per CPU, at most 4).")
        parser.add_argument("--account-deadline", type=float, default=upkeep.ACCOUNT_DEADLINE,
                            help="Seconds one account may take before it is recorded as failed and left "
                                 f"behind (default {upkeep.ACCOUNT_DEADLINE}).")
        parser.add_argument("--dry-run", action="store_true", help="List what is due; call no platform, change nothing.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, even on a terminal.")

    def handle(self, *args, **options):
        if not 1 <= options["concurrency"] <= 256:
            raise CommandError("--concurrency must be between 1 and 256.")
        if options["processes"] is not None and not 1 <= options["processes"] <= 64:
            raise CommandError("--processes must be between 1 and 64.")
        if not 1 <= options["account_deadline"] <= 3600:
            raise CommandError("--account-deadline must be between 1 and 3600 seconds.")
        run_options = upkeep.Options(
            platforms=tuple(options["platform"]), user_ids=self._user_ids(options["user"]),
            concurrency=options["concurrency"], dry_run=options["dry_run"],
            account_deadline=options["account_deadline"],
            processes=options["processes"] or upkeep.default_processes(),
        )
        show_progress = not options["no_progress"] and sys.stderr.isatty()
        try:
            with upkeep.single_copy():
                report = upkeep.run(run_options, progress=self._progress if show_progress else None)
        except upkeep.AlreadyRunning as exc:
            self.stderr.write(f"{exc} Nothing to do.")
            return
        if show_progress:
            sys.stderr.write("\n")
        self._summary(report, dry_run=options["dry_run"], platforms=run_options.platforms)

    def _user_ids(self, names: list[str]) -> tuple[int, ...]:
        users = get_user_model().objects
        ids = []
        for name in names:
            user = users.filter(username=name).first() or users.filter(email__iexact=name).first()
            if user is None:
                raise CommandError(f"No user {name!r}.")
            ids.append(user.pk)
        return tuple(ids)

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} accounts")
        sys.stderr.flush()

    def _summary(self, report: upkeep.Report, *, dry_run: bool, platforms: tuple[str, ...]) -> None:
        outcomes = upkeep.DRY_RUN_OUTCOMES if dry_run else tuple(COLUMNS)
        headers = ["platform", "checked" if not dry_run else "due"] + ([] if dry_run else [COLUMNS[o] for o in outcomes])
        rows = []
        for provider in PROVIDERS:
            if platforms and provider.name not in platforms:
                continue
            counts = report.row(provider.name, outcomes)
            checked = sum(v for k, v in counts.items() if k != "deferred")
            rows.append([provider.name, checked] + ([] if dry_run else list(counts.values())))
        rows.append(["total"] + [sum(row[i] for row in rows) for i in range(1, len(headers))])
        widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
        for row in [headers, *rows]:
            self.stdout.write("  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        verb = "due" if dry_run else "checked"
        by = f" by {report.processes} processes" if report.processes > 1 else ""
        self.stdout.write(f"{report.accounts} accounts {verb}{by}.")
