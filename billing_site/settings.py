"""Settings, read strictly from the environment (every variable is documented in README.md).

Defaults give a service that runs on a fresh machine with no external server: SQLite under var/ and
kombu's filesystem transport as the Celery broker. Production sets DATABASE_URL, REDIS_URL and SECRET_KEY.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import babel as _babel

from billing_site.env import (
    EnvError,
    check_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)
from billing_site.jwt_settings import jwt_algorithms, jwt_scope_map, jwt_settings_check

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# No random fallback: a per-process random key would silently break signed cursors and sessions across
# processes. Debug (local development) gets a fixed, obviously insecure key.
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise EnvError("SECRET_KEY must be set when DEBUG is off (set DEBUG=true for local development)")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
elif len(SECRET_KEY) < 32 and not DEBUG:
    raise EnvError("SECRET_KEY must be at least 32 characters long")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise EnvError("ALLOWED_HOSTS must be set when DEBUG is off (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Our apps, in import order: an app may import only those above it.
    "billing_site.apps.BillingSiteConfig",
    "webhooks.apps.WebhooksConfig",
    "customers.apps.CustomersConfig",
    "metering.apps.MeteringConfig",
    "catalog.apps.CatalogConfig",
    "invoicing.apps.InvoicingConfig",
    "subscriptions.apps.SubscriptionsConfig",
    "payments.apps.PaymentsConfig",
    "portal.apps.PortalConfig",
]

MIDDLEWARE = [
    "billing_site.middleware.RequestIdMiddleware",
    "billing_site.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI, the portal's CSS and scripts) served by the app itself from
    # STATIC_ROOT (filled by `collectstatic`, as the Dockerfile does): no separate file server to keep in sync.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "billing_site.middleware.PublicOriginMiddleware",
]

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # One override of admin's own templates (admin/base_site.html: the shared admin stylesheet).
        "DIRS": [BASE_DIR / "billing_site" / "site_templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'billing.sqlite3'}")
_db = parse_database_url("DATABASE_URL", DATABASE_URL)
if _db["ENGINE"].endswith("sqlite3"):
    # WAL plus IMMEDIATE transactions let the web process and the embedded worker write the same file
    # without "database is locked" errors on the development default.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        **_db["OPTIONS"],
    }
else:
    _pool_max = env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=0, maximum=1000)
    if _pool_max:
        _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _pool_max, "timeout": 10}
    else:
        _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
DATABASES = {"default": _db}
# --- Read replica (issue 15): list endpoints, usage reads and exports may read from it
# (billing_site/replicas.py); everything that decides money reads the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    _replica = parse_database_url("DATABASE_REPLICA_URL", DATABASE_REPLICA_URL)
    if _replica["ENGINE"] != _db["ENGINE"]:
        raise EnvError("DATABASE_REPLICA_URL must name the same kind of database as DATABASE_URL")
    _replica["OPTIONS"] = {**_replica["OPTIONS"], **{k: v for k, v in _db["OPTIONS"].items() if k == "pool"}}
    _replica["CONN_MAX_AGE"] = _db.get("CONN_MAX_AGE", 0)
    # The test suite reads the replica alias as the primary itself (a replica with no lag); the routing
    # test points it at a second database of its own.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["billing_site.replicas.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    check_url("REDIS_URL", REDIS_URL, ("redis", "rediss", "unix"))
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
check_url("CELERY_BROKER_URL", CELERY_BROKER_URL, ("redis", "rediss", "amqp", "amqps", "filesystem", "memory"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files under var/, so `make run` needs no server.
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (worker control) messages: without this kombu writes a `control/` folder in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Queues by the work they do, so heavy or slow work gets workers of its own (docker-compose.yml runs one
# worker per group). `default`: sweeps and cheap tasks; `billing`: renewal batches; `collection`: provider
# calls (charges, refunds, resolving lost answers); `webhooks`: outbound deliveries and inbound events;
# `metering`: usage side jobs (roll-ups, usage push); `documents`: PDF rendering. A worker that should do
# everything consumes all of BILLING_QUEUES (as `make run`'s does).
BILLING_QUEUES = ("default", "billing", "collection", "webhooks", "metering", "documents")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "billing.run_job": {"queue": "default"},
    "subscriptions.*": {"queue": "billing"},
    "payments.*": {"queue": "collection"},
    "webhooks.*": {"queue": "webhooks"},
    "metering.*": {"queue": "metering"},
    "documents.*": {"queue": "documents"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

# --- Auth, i18n, static ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- API ------------------------------------------------------------------------------------------
# Bodies over this size get 413 before any parsing (a batch of 10,000 usage events is about 2.5 MB).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
IDEMPOTENCY_KEY_TTL = timedelta(hours=env_int("IDEMPOTENCY_KEY_TTL_HOURS", 48, minimum=24))
# A request that holds its Idempotency-Key longer than this is presumed dead (worker killed mid-request)
# and the key may be taken again. Must exceed the longest request (gunicorn's timeout).
IDEMPOTENCY_LOCK_TIMEOUT = timedelta(seconds=env_int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", 300, minimum=30))
API_KEY_LAST_USED_RESOLUTION = timedelta(seconds=60)
# How long a process keeps an API key's lookup (billing_site/auth.py): a revocation or an edit still takes
# effect on the next request (a generation in the shared cache); 0 reads the key on every request.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 60, minimum=0, maximum=3600)
# Requests per API key: "N/second", "N/minute" or "N/hour"; "0" turns limiting off. Over it: 429 with
# Retry-After. Counted in the cache, so it is per process unless REDIS_URL is set (as in production).
_periods = {"second": 1, "minute": 60, "hour": 3600}


def _rate_setting(name: str, default: str) -> tuple[int, int]:
    rate = env_str(name, default) or ""
    if rate == "0":
        return (0, 60)
    count, _, unit = rate.partition("/")
    if not count.isdigit() or unit not in _periods:
        raise EnvError(f"{name} must look like {default} (or 0 for none), got {rate!r}")
    return (int(count), _periods[unit])


API_RATE_LIMIT = _rate_setting("API_RATE_LIMIT", "6000/minute")
# Requests without a valid credential (none sent, or one that fails), per client address: guessing keys
# or tokens is slowed down, and anonymous traffic cannot take the service's time without limit.
API_ANON_RATE_LIMIT = _rate_setting("API_ANON_RATE_LIMIT", "300/minute")
# The client address is REMOTE_ADDR unless the service sits behind this many trusted proxies, which
# append to X-Forwarded-For (0: the header is ignored, so a client cannot pick its own address).
API_NUM_PROXIES = env_int("API_NUM_PROXIES", 0, minimum=0, maximum=10)
# Usage events older than this are refused at ingestion (periods that old are already invoiced).
METERING_BACKFILL_WINDOW = timedelta(days=env_int("METERING_BACKFILL_DAYS", 35, minimum=1, maximum=3650))
# --- Metering at scale (issue 15) ---
# PostgreSQL: the events table's partitions span a UTC calendar month (or a day), made this many ahead.
METERING_PARTITION_INTERVAL = env_choice("METERING_PARTITION_INTERVAL", "month", ("month", "day"))
METERING_PARTITIONS_AHEAD = env_int("METERING_PARTITIONS_AHEAD", 2, minimum=1, maximum=60)

# --- JWT bearer tokens (OIDC) ---------------------------------------------------------------------
# Off unless JWT_ISSUER is set; API keys work either way. Every variable is described in README.md.
JWT_ISSUER = env_str("JWT_ISSUER")
JWT_AUDIENCES = env_list("JWT_AUDIENCES", [])
JWT_JWKS_URL = env_str("JWT_JWKS_URL")
OIDC_DISCOVERY_URL = env_str("OIDC_DISCOVERY_URL")
jwt_settings_check(
    issuer=JWT_ISSUER, audiences=JWT_AUDIENCES, jwks_url=JWT_JWKS_URL, discovery_url=OIDC_DISCOVERY_URL, debug=DEBUG
)
JWT_ALGORITHMS = jwt_algorithms("JWT_ALGORITHMS", env_list("JWT_ALGORITHMS", ["RS256", "ES256"]))
JWT_LEEWAY_SECONDS = env_int("JWT_LEEWAY_SECONDS", 60, minimum=0, maximum=300)
JWT_TENANT_CLAIM = env_str("JWT_TENANT_CLAIM", "custom:tenantId")
JWT_SCOPE_MAP = jwt_scope_map("JWT_SCOPE_MAP")
# Keys are kept this long, then fetched again. An unknown `kid` fetches them early, but never twice
# within JWT_JWKS_MIN_REFRESH_SECONDS (per process), so tokens with made-up kids cannot flood the
# identity provider; a failed fetch waits as long before it is tried again.
JWT_JWKS_CACHE_SECONDS = env_int("JWT_JWKS_CACHE_SECONDS", 900, minimum=10, maximum=86_400)
JWT_JWKS_MIN_REFRESH_SECONDS = env_int("JWT_JWKS_MIN_REFRESH_SECONDS", 60, minimum=1, maximum=3600)
JWT_JWKS_TIMEOUT_SECONDS = env_int("JWT_JWKS_TIMEOUT_SECONDS", 5, minimum=1, maximum=60)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "billing_site.auth.ApiKeyAuthentication",
        "billing_site.tokens.JwtAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["billing_site.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["billing_site.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["billing_site.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["billing_site.renderers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "billing_site.schema.BillingAutoSchema",
    "EXCEPTION_HANDLER": "billing_site.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "NUM_PROXIES": API_NUM_PROXIES,
    # OPTIONS is not part of this API (no CORS preflight is served): 405, like any other method a route lacks.
    "DEFAULT_METADATA_CLASS": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing service API",
    "DESCRIPTION": "Usage metering, pricing, subscriptions, invoices and payments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets are served from our own static files, not a CDN: the service runs offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # Subscriptions and tiers share one collection-method enum (issue 13: tiers); named here because
    # invoicing's field of the same name is another choice set.
    "ENUM_NAME_OVERRIDES": {"SubscriptionCollectionMethodEnum": "subscriptions.models.Subscription.CollectionMethod"},
}

# --- Billing --------------------------------------------------------------------------------------
INVOICE_NUMBER_PREFIX = env_str("INVOICE_NUMBER_PREFIX", "INV-")
CREDIT_NOTE_NUMBER_PREFIX = env_str("CREDIT_NOTE_NUMBER_PREFIX", "CN-")
INVOICE_DAYS_UNTIL_DUE = env_int("INVOICE_DAYS_UNTIL_DUE", 30, minimum=0, maximum=365)
# Invoices made by the lifecycle are finalized (numbered, open) at once; off leaves them as drafts.
INVOICE_AUTO_FINALIZE = env_bool("INVOICE_AUTO_FINALIZE", True)
# Dunning: retries this many days after the first failed charge; after the last one the invoice is
# uncollectible and the subscription becomes DUNNING_FINAL_ACTION.
_retry_days = env_list("DUNNING_RETRY_DAYS", ["1", "3", "5", "7"])
if not all(d.isdigit() for d in _retry_days) or [int(d) for d in _retry_days] != sorted({int(d) for d in _retry_days}):
    raise EnvError("DUNNING_RETRY_DAYS must be strictly increasing whole numbers of days, e.g. 1,3,5,7")
DUNNING_RETRY_DAYS = [int(d) for d in _retry_days]
DUNNING_FINAL_ACTION = env_choice("DUNNING_FINAL_ACTION", "unpaid", ("unpaid", "canceled"))
# Entitlements: how long a customer's answer may stay cached (every change that affects it drops it sooner).
ENTITLEMENTS_CACHE_SECONDS = env_int("ENTITLEMENTS_CACHE_SECONDS", 300, minimum=1, maximum=86_400)
# Test clocks (test mode): customers on a clock of their own, advanced through the API. Off in live mode
# (DEBUG off) unless set: a clock must never make a live customer's billing run ahead of real time.
TEST_CLOCKS_ENABLED = env_bool("TEST_CLOCKS_ENABLED", DEBUG)
# How long an unused clock lives (Stripe: 30 days); `deletes_after` on the clock.
TEST_CLOCK_LIFETIME_DAYS = env_int("TEST_CLOCK_LIFETIME_DAYS", 30, minimum=1, maximum=3650)
# One advance may step over at most this many due moments (a runaway schedule is refused, not looped).
TEST_CLOCK_MAX_STEPS = env_int("TEST_CLOCK_MAX_STEPS", 1000, minimum=1, maximum=100_000)
RENEWAL_BATCH_SIZE = env_int("RENEWAL_BATCH_SIZE", 500, minimum=1, maximum=100_000)
# Row locks taken out of the one order (billing_site.locks) raise instead of being logged. On in the tests.
LOCK_ORDER_STRICT = env_bool("LOCK_ORDER_STRICT", False)
# The payment processor of customers that name none (`Customer.provider`): sandbox needs no network.
PAYMENTS_PROCESSOR = env_choice("PAYMENTS_PROCESSOR", "sandbox", ("sandbox", "stripe"))
# Required only when a customer or the setting uses stripe; handed to the SDK, never logged.
STRIPE_API_KEY = env_str("STRIPE_API_KEY")

# --- Webhooks (outbound deliveries, inbound provider events) --------------------------------------
# Endpoint URLs that resolve to loopback, private, link-local, CGNAT or cloud-metadata addresses are
# refused (SSRF) unless this is on; tests and local development turn it on.
WEBHOOKS_ALLOW_PRIVATE_URLS = env_bool("WEBHOOKS_ALLOW_PRIVATE_URLS", False)
# Plain http endpoints are refused outside DEBUG unless this is on.
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)
WEBHOOKS_TIMEOUT_SECONDS = env_int("WEBHOOKS_TIMEOUT_SECONDS", 10, minimum=1, maximum=60)
_units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_schedule = env_list("WEBHOOKS_RETRY_SCHEDULE", ["5s", "5m", "30m", "2h", "5h", "10h", "10h"])
if not _schedule or not all(
    len(step) > 1 and step[:-1].isdigit() and int(step[:-1]) > 0 and step[-1] in _units for step in _schedule
):
    raise EnvError("WEBHOOKS_RETRY_SCHEDULE must be delays like 5s,5m,30m,2h,5h,10h,10h (units s, m, h, d)")
# Delay before retry n (after the n-th failed attempt in a row); after the last one a delivery has failed.
WEBHOOKS_RETRY_SCHEDULE = [timedelta(seconds=int(step[:-1]) * _units[step[-1]]) for step in _schedule]
# Each delay is moved by up to this percentage either way, so endpoints that fail together do not all
# come back at the same second.
WEBHOOKS_RETRY_JITTER_PERCENT = env_int("WEBHOOKS_RETRY_JITTER_PERCENT", 10, minimum=0, maximum=50)
# An endpoint with no successful delivery for this long while deliveries fail is disabled.
WEBHOOKS_DISABLE_AFTER = timedelta(days=env_int("WEBHOOKS_DISABLE_AFTER_DAYS", 5, minimum=1, maximum=365))
# After a rotation the previous secret keeps signing beside the new one for this long.
WEBHOOKS_SECRET_OVERLAP = timedelta(hours=24)
# "Resend everything since T" refuses to queue more than this many events at once.
WEBHOOKS_RESEND_MAX_EVENTS = env_int("WEBHOOKS_RESEND_MAX_EVENTS", 10_000, minimum=1)
# Inbound: the signing secret of our Stripe webhook endpoint (whsec_...). Never logged or returned.
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
# Where the Stripe SDK sends API calls: Stripe's own API by default, a local fake in tests, or a proxy.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com")
check_url("STRIPE_API_BASE", STRIPE_API_BASE, ("https", "http"))

# --- Documents (invoice, credit note and receipt PDFs) ---------------------------------------------
# Who issues the documents. A finalized document is rendered once and stored, so a change here shows on
# documents rendered from then on, never on one a customer already received.
SELLER_NAME = env_str("SELLER_NAME", "") or ""
# Address lines, separated by newlines or by a literal "\n" (an env file cannot hold a newline).
SELLER_ADDRESS = [
    line.strip() for line in (env_str("SELLER_ADDRESS", "") or "").replace("\\n", "\n").splitlines() if line.strip()
]
SELLER_TAX_ID = env_str("SELLER_TAX_ID", "") or ""
SELLER_LOGO_PATH = env_str("SELLER_LOGO_PATH", "") or ""
_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
if SELLER_LOGO_PATH:
    if Path(SELLER_LOGO_PATH).suffix.lower() not in _LOGO_TYPES:
        raise EnvError(f"SELLER_LOGO_PATH must be a .png, .jpg or .svg file, got {SELLER_LOGO_PATH!r}")
    if not Path(SELLER_LOGO_PATH).is_file():
        raise EnvError(f"SELLER_LOGO_PATH names no readable file: {SELLER_LOGO_PATH!r}")
# Printed at the bottom of every page (bank details, registered office, terms).
DOCUMENT_FOOTER = env_str("DOCUMENT_FOOTER", "") or ""
# The CLDR locale amounts, numbers and dates are written in: en, de, fr_CA, ja, ...
DOCUMENT_LOCALE = env_str("DOCUMENT_LOCALE", "en") or "en"
try:
    _babel.Locale.parse(DOCUMENT_LOCALE.replace("-", "_"))
except (_babel.UnknownLocaleError, ValueError):
    raise EnvError(
        f"DOCUMENT_LOCALE must be a CLDR locale such as en, de, fr_CA or ja, got {DOCUMENT_LOCALE!r}"
    ) from None

# --- Hosted invoice pages and the customer portal (portal app) -----------------------------------
# The origin (scheme://host[:port]) of the URLs we hand out: `hosted_invoice_url` on invoices and the
# `url` of portal sessions. Required without DEBUG; under DEBUG, unset, it is the origin of the request
# being served (or http://127.0.0.1:8000 outside a request: a task, a shell).
PUBLIC_BASE_URL = (env_str("PUBLIC_BASE_URL") or "").rstrip("/")
if PUBLIC_BASE_URL:
    check_url("PUBLIC_BASE_URL", PUBLIC_BASE_URL, ("https", "http"))
elif not DEBUG:
    raise EnvError(
        "PUBLIC_BASE_URL must be set when DEBUG is off: the origin of hosted invoice and portal URLs, "
        "e.g. https://billing.example.com"
    )
# How long a portal session's URL works after it is created (minutes).
PORTAL_SESSION_MINUTES = env_int("PORTAL_SESSION_MINUTES", 60, minimum=1, maximum=24 * 60)
# Stripe's publishable key (pk_...), for Stripe.js on the hosted invoice page and the portal when Stripe
# is the processor. Public by design; without it those pages offer no card form for Stripe customers.
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "") or ""

# --- SaaS control plane (sbt-aws) ----------------------------------------------------------------
# Answers to control-plane events (sbt_aws_billingSuccess / sbt_aws_billingFailure) go to this EventBridge
# bus (a name or an ARN) through boto3's put_events; unset, no answer is sent. Credentials come from
# boto3's usual chain (environment, instance or task role); never from here.
SBT_EVENT_BUS_NAME = env_str("SBT_EVENT_BUS_NAME")
# The bus's region; unset, the region of an ARN bus, else boto3's chain (AWS_REGION, AWS_DEFAULT_REGION).
SBT_EVENT_BUS_REGION = env_str("SBT_EVENT_BUS_REGION")
# The `source` of our answers: sbt-aws listens for billingSuccess/billingFailure from the control plane's.
SBT_EVENT_SOURCE = env_str("SBT_EVENT_SOURCE", "sbt.control.plane")
if SBT_EVENT_SOURCE is not None and not 1 <= len(SBT_EVENT_SOURCE) <= 256:
    raise EnvError("SBT_EVENT_SOURCE must be 1-256 characters")
# Offboarding ends every subscription now (final usage billed); then each open invoice of the tenant is
# either collected at once (`collect`: credits, balance, its payment method) or left open with automatic
# charges stopped, for the operator to settle (`leave_open`).
CONTROL_PLANE_OFFBOARD_INVOICES = env_choice("CONTROL_PLANE_OFFBOARD_INVOICES", "collect", ("collect", "leave_open"))
# Whether offboarding credits the unused part of periods already billed in advance (as cancel's `prorate`).
CONTROL_PLANE_OFFBOARD_PRORATE = env_bool("CONTROL_PLANE_OFFBOARD_PRORATE", False)

# --- Stripe SDK and usage push (issue 12) ---------------------------------------------------------
# STRIPE_API_BASE (where the SDK sends its calls) is set with the webhooks settings above.
# Seconds to wait for Stripe to connect and for each answer (the SDK's own default is 80).
STRIPE_TIMEOUT_SECONDS = env_float("STRIPE_TIMEOUT_SECONDS", 30.0, minimum=0.05, maximum=300)
# The mode of customers created without one: native (we invoice and collect) or provider (we meter and
# push usage to Stripe Billing, which invoices).
BILLING_MODE_DEFAULT = env_choice("BILLING_MODE_DEFAULT", "native", ("native", "provider"))
# The slices usage is pushed in: hour (the reference pipeline) or day (putUsage).
USAGE_PUSH_SLICE = env_choice("USAGE_PUSH_SLICE", "hour", ("hour", "day"))

# --- Logging --------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "billing_site.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "billing_site.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "text" if DEBUG else "json",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our handler logs uncaught API errors with their request id; Django's own copy would be a duplicate.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # WeasyPrint logs every rendering step at INFO; its warnings (a font or image it could not use) stay.
        "weasyprint": {"level": "WARNING"},
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
