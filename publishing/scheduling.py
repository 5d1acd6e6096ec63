"""Time rules for scheduled posts (issue 15): local times to UTC across DST, what a schedule may
ask for, the late-grace decision after an outage, and the per-24-hour quota warning.

Pure functions: no database, the clock is an argument. Stored times are UTC; a user's local time
is only ever turned into UTC here, and a local time that does not exist or exists twice is
refused or asked about, never guessed.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils.dateparse import parse_datetime

UTC = dt_timezone.utc
PAST_TOLERANCE = timedelta(minutes=1)  # a form filled in slowly is still "now"
MAX_AHEAD = timedelta(days=366)  # a year ahead (and a leap day); further is a typo
QUOTA_WINDOW = timedelta(hours=24)  # Threads and Instagram count posts over a moving 24 hours


class ScheduleError(ValueError):
    """A time the user must change; the message says why."""


class NonexistentTime(ScheduleError):
    """The local time is skipped by a DST change (02:30 on a spring-forward day in Berlin)."""


class AmbiguousTime(ScheduleError):
    """The local time happens twice (01:30 on a fall-back day): the caller chooses with `fold`.

    `earlier`/`later`: the two UTC instants (fold=0 and fold=1), so a page can ask which.
    """

    def __init__(self, message: str, *, earlier: datetime, later: datetime):
        super().__init__(message)
        self.earlier, self.later = earlier, later


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ScheduleError for anything else (also used to validate the profile)."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ScheduleError(f"'{str(name)[:64]}' is not a time zone name such as Europe/Berlin.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"'{name}' is not a time zone name such as Europe/Berlin.") from None


def local_to_utc(day: date, at: time, zone_name: str, *, fold: int | None = None) -> datetime:
    """The UTC instant of the wall-clock time `day` `at` in `zone_name`.

    Raises NonexistentTime for a time a spring-forward skips, and AmbiguousTime for one a fall-back
    repeats unless `fold` is given (0: the first, earlier occurrence; 1: the second).
    """
    tz = zone(zone_name)
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise NonexistentTime(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone_name}: the clocks skip it for daylight saving time. "
            "Choose a time outside the skipped hour.")
    if first.utcoffset() != second.utcoffset():
        if fold is None:
            raise AmbiguousTime(
                f"{naive:%Y-%m-%d %H:%M} happens twice in {zone_name} (the clocks go back): choose the first "
                f"({first.astimezone(UTC):%H:%M} UTC) or the second ({second.astimezone(UTC):%H:%M} UTC).",
                earlier=first.astimezone(UTC), later=second.astimezone(UTC))
        return (second if fold else first).astimezone(UTC)
    return first.astimezone(UTC)


def parse_scheduled_at(value, *, now: datetime) -> datetime:
    """`scheduledAt` from the API (ISO 8601 with an offset) as UTC, or ScheduleError saying why not."""
    if not isinstance(value, str):
        raise ScheduleError("'scheduledAt' must be an ISO 8601 time with an offset, e.g. 2026-03-29T09:30:00+02:00.")
    try:
        when = parse_datetime(value.strip())
    except ValueError:
        when = None
    if when is None:
        raise ScheduleError("'scheduledAt' must be an ISO 8601 time with an offset, e.g. 2026-03-29T09:30:00+02:00.")
    if when.tzinfo is None or when.utcoffset() is None:
        # A time without an offset means a different instant in every zone: never guessed.
        raise ScheduleError("'scheduledAt' has no offset: add one (e.g. +02:00 or Z) so the time is not guessed.")
    return check_schedule(when.astimezone(UTC), now=now)


def check_schedule(when: datetime, *, now: datetime) -> datetime:
    if when < now - PAST_TOLERANCE:
        raise ScheduleError(f"'scheduledAt' ({when:%Y-%m-%d %H:%M} UTC) is in the past: choose a later time.")
    if when > now + MAX_AHEAD:
        raise ScheduleError("'scheduledAt' is more than a year ahead: choose an earlier time.")
    return when


def late_grace() -> timedelta:
    """HAYON_LATE_GRACE: a timedelta, or a number of minutes (default 60)."""
    grace = getattr(settings, "HAYON_LATE_GRACE", 60)
    return grace if isinstance(grace, timedelta) else timedelta(minutes=float(grace))


@dataclass(frozen=True)
class Lateness:
    missed: bool
    seconds: int  # how late the delivery starts (0 when on time)


def lateness(*, scheduled_at: datetime, now: datetime, grace: timedelta) -> Lateness:
    """After an outage: a delivery up to `grace` late goes out (and says how late); later ones are
    missed and wait for the user, so a restarted worker never sends a burst of stale posts."""
    late = max(now - scheduled_at, timedelta(0))
    return Lateness(missed=late > grace, seconds=int(late.total_seconds()))


def busiest_window(times: list[datetime], *, at: datetime, window: timedelta = QUOTA_WINDOW) -> int:
    """The most posts (counting one more at `at`) in any moving `window` that contains `at`."""
    events = sorted([*times, at])
    best = 0
    for start in (t for t in events if at - window < t <= at):
        best = max(best, sum(1 for t in events if start <= t < start + window))
    return best
