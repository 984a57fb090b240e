"""Environment for the test run, set before Django reads its settings.

Tests run the site as production does (DEBUG off), with a throwaway secret
and their own data folder, so they never touch a developer's database.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-used-anywhere-else")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SHORTENER_DATA_DIR", tempfile.mkdtemp(prefix="shortener-tests-"))
os.environ.setdefault("DJANGO_STATIC_ROOT", tempfile.mkdtemp(prefix="shortener-static-"))
# Tests create many links from one address; the throttle has tests of its own.
os.environ.setdefault("SHORTENER_ANON_CREATE_RATE", "100000/min")
# In-process tests flush clicks themselves (click_counter.flush()); a background
# flush on a connection of its own could not see their uncommitted links.
# Live sites (tests/conftest.py's site_env) flush every second (production: 0.1 s),
# which their waits for clicks allow for.
# Journaled clicks (SQLite) are rolled into the counters at every flush, in
# live sites too (tests/test_clicks.py tests the roll-up's interval and start).
os.environ.setdefault("SHORTENER_CLICK_FLUSH_SECONDS", "3600")
os.environ.setdefault("SHORTENER_CLICK_ROLLUP_SECONDS", "0")
