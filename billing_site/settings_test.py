"""Settings for the test suite: the real settings, with Celery eager and cheap password hashing.

`make test` runs on SQLite unless DATABASE_URL (and REDIS_URL) point at real servers, as in CI.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnop")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")

from billing_site.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True
LOCK_ORDER_STRICT = True
CELERY_TASK_EAGER_PROPAGATES = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# Deliveries in tests go to local HTTP servers on 127.0.0.1.
WEBHOOKS_ALLOW_PRIVATE_URLS = True
WEBHOOKS_ALLOW_HTTP = True
# Test clocks are a test-mode feature (off outside DEBUG by default); the suite exercises them.
TEST_CLOCKS_ENABLED = True
# The whole suite sends thousands of requests without a valid credential from 127.0.0.1 (the token matrix,
# scope checks): the per-address limit would turn its 401s into 429s. Its own tests set it.
API_ANON_RATE_LIMIT = (0, 60)
# The suite never runs collectstatic: WhiteNoise looks files up per request instead of indexing a
# STATIC_ROOT that does not exist (and warning about it in every test that builds a client).
WHITENOISE_AUTOREFRESH = True
