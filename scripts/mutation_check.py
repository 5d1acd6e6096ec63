#!/usr/bin/env python3
"""Remove one protection at a time and check that the test suite notices.

    .venv/bin/python scripts/mutation_check.py        (about five minutes)

Each entry names a case of shared/security-tests.md, the line that implements the protection,
and a replacement that switches it off. The file is restored after each run. Exit status 1 when
any mutation survives, i.e. no test failed without the protection.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_oauth_security.py", "tests/test_platform_faults.py", "tests/test_find_api.py",
         "tests/test_bluesky.py", "tests/test_secrets_at_rest.py", "tests/test_mastodon.py", "tests/test_tumblr.py",
         "tests/test_api_tokens.py", "tests/test_upkeep.py"]
MUTATIONS = [
    ("2 state bound to its user", "platforms/oauth_state.py", "or row.user_id != request.user.pk", "or False"),
    ("3 state bound to the session", "platforms/oauth_state.py",
     "or (row.session_hash and row.session_hash != session_hash(request))", "or False"),
    ("5/9 state single-use", "platforms/oauth_state.py",
     "deleted, _ = PendingFlow.objects.filter(id=row.id).delete()", "deleted = 1"),
    ("6 repeated state refused", "platforms/providers/base.py",
     'return values[0] if len(values) == 1 else ""', 'return values[0] if values else ""'),
    ("7 state expires", "platforms/oauth_state.py",
     "if row.created_at < timezone.now() - timedelta(seconds=settings.OAUTH_STATE_MAX_AGE):", "if False:"),
    ("22 Bluesky refresh under the row lock", "platforms/providers/bluesky.py",
     "refresh_under_lock = True", "refresh_under_lock = False"),
    ("23 no redirects followed", "platforms/http.py",
     'kwargs["allow_redirects"] = False', 'kwargs["allow_redirects"] = True'),
    ("29 app password shape checked", "platforms/providers/bluesky.py", "if not APP_PASSWORD.match(value):", "if False:"),
    ("31 private hosts refused", "platforms/hosts.py",
     "allow_private = settings.HAYON_ALLOW_PRIVATE_HOSTS", "allow_private = True"),
    ("32 one allowlist for what is shown", "platforms/public.py",
     "public.update(_pick(doc, IDENTIFIER_FIELDS + DETAIL_FIELDS))", "public.update(doc)"),
    ("35 query strings redacted in logs", "hayon/log_redaction.py",
     'text = _QUERY.sub("?[redacted]", text)', "pass"),
    ("upkeep: claimed rows skipped by other copies", "platforms/upkeep.py",
     "Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)", "Q()"),
]


def main() -> int:
    survivors = 0
    for case, path, protection, mutant in MUTATIONS:
        file = ROOT / path
        original = file.read_text()
        if protection not in original:
            print(f"case {case}: the protected line moved; update scripts/mutation_check.py")
            survivors += 1
            continue
        file.write_text(original.replace(protection, mutant, 1))
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                                 cwd=ROOT, capture_output=True, text=True, env={**os.environ, "DJANGO_ENV": "test"})
        finally:
            file.write_text(original)
        failed = next((line[7:] for line in run.stdout.splitlines() if line.startswith("FAILED")), "")
        print(f"case {case}: " + (f"caught by {failed[:100]}" if run.returncode else "NOT CAUGHT"), flush=True)
        survivors += not run.returncode
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
