"""Settings for the shortener, driven entirely by environment variables.

Every variable is listed, with its default, in `.env.example` and the README.
"""

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Local development: scripts/run_local.sh writes data/local.env (DJANGO_DEBUG=1),
# so manage.py works in a checkout without hand-set variables. It can never
# switch a deployment to DEBUG: data/ is left out of git, the images
# (.dockerignore) and deploys (deploy.sh, the scp route), compose never reads
# it, and a variable the environment sets always wins (the tests', a container's).
LOCAL_ENV_FILE = BASE_DIR / "data" / "local.env"
if LOCAL_ENV_FILE.is_file():
    environ.Env.read_env(LOCAL_ENV_FILE, overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Production (DEBUG off) refuses to start without a real secret: a default
# key would let anyone forge sessions and admin logins.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105 - DEBUG only

# Loopback names are always allowed: container health checks call the app
# from inside, and a client that calls localhost really is local.
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[]) + LOOPBACK_HOSTS
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The address short links are built on, e.g. "https://sho.rt". Empty: taken
# from each request (Host header, scheme as trusted by uvicorn's proxy headers).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")

# Plain redirects answered before Django's stack (links/fastpath.py). Off: every
# request goes through Django (for comparison in benchmarks).
REDIRECT_FAST_PATH = env.bool("SHORTENER_REDIRECT_FAST_PATH", default=True)
# The most each worker's redirect cache holds (its oldest entries make room). A
# miss reads the database through its memory map, the kernel's page cache that
# every worker shares, at 6-8 µs. 8 MiB holds about 25,000 short links or 3,500
# of the longest; a bound of 100,000 entries measured no faster while it held
# 24 MiB more a worker at 1,000,000 links (docs/performance.md, 2026-11-30, fifth).
# 0 turns the cache off.
REDIRECT_CACHE_BYTES = int(env.float("SHORTENER_REDIRECT_CACHE_MIB", default=8) * 2**20)
# On SQLite, misses of that cache are read from the redirect table
# (links/redirect_table.py): a file beside the database, shared by the workers
# through the page cache, built again in a process of its own after a change.
REDIRECT_TABLE = env.bool("SHORTENER_REDIRECT_TABLE", default=True)

SLUG_LENGTH = env.int("SHORTENER_SLUG_LENGTH", default=7)
MAX_URL_LENGTH = env.int("SHORTENER_MAX_URL_LENGTH", default=2048)
# Seconds between writes of the clicks counted in memory (links/clicks.py): what a
# crashed worker can lose at most. Making a batch (sorting it, its JSON) holds the
# interpreter lock that the worker's requests wait for, so the batch is kept
# small: at 1,000,000 links a flush every 0.1 s gave a p99 of 31-41 ms against
# 55-78 ms once a second, at the same throughput (docs/performance.md,
# 2026-11-30, fifth).
CLICK_FLUSH_SECONDS = env.float("SHORTENER_CLICK_FLUSH_SECONDS", default=0.1)
# On SQLite a flush appends to a journal (a file beside the database), added
# to the link counters once a batch in it is this old, by whichever worker's
# roll-up comes first (links/clicks.py): how late a click can be in the admin
# and the API, with the flush's interval. 0: after every flush.
CLICK_ROLLUP_SECONDS = env.float("SHORTENER_CLICK_ROLLUP_SECONDS", default=10.0)
SITE_NAME = env.str("SHORTENER_SITE_NAME", default="Shortener")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "links",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A database or Redis outage answers 503 JSON from Django's views too.
    "links.errors.BackendUnavailableMiddleware",
]

# A CSRF failure answers in the site's one error shape.
CSRF_FAILURE_VIEW = "links.errors.json_csrf_failure"
# Link requests are a few hundred bytes; nginx allows 16 KiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Slugs are case-sensitive and never end in "/": redirecting "/abc" to "/abc/"
# would break the contract.
APPEND_SLASH = False

ROOT_URLCONF = "shortener_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

ASGI_APPLICATION = "shortener_site.asgi.application"
WSGI_APPLICATION = "shortener_site.wsgi.application"

DATA_DIR = Path(env.str("SHORTENER_DATA_DIR", default=str(BASE_DIR / "data")))
SQLITE_PATH = Path(env.str("SQLITE_PATH", default=str(DATA_DIR / "shortener.sqlite3")))
# SQLite creates the file but not its folder.
SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)

# PostgreSQL when DATABASE_URL is set (postgres://user:password@host:5432/name), through
# psycopg 3 and Django's own connection pool; else SQLite, the single-box default.
DATABASE_URL = env.str("DATABASE_URL", default="")
# How much of the SQLite file every connection (Django's and the fast path's
# reader) reads through a memory map: all of it, for any site this size fits.
# A page read past the map is a system call and a copy, and a connection's page
# cache is emptied at every commit by another, so at 1,000,000 links (a 190 MB
# file) a 128 MB map cost four reads a redirect (docs/performance.md,
# 2026-11-30, third session). Its map is undone then too, which is why the
# click journal has a file of its own (links/clicks.py). Mapped pages are the
# kernel's page cache, shared by every process, not memory of the workers' own.
SQLITE_MMAP_BYTES = 2**30
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    # The pool replaces persistent connections (CONN_MAX_AGE must stay 0); the
    # URL's own query options (?sslmode=verify-full&sslrootcert=…) are kept.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=4),
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction starts, so two
                # writers queue on the busy timeout instead of failing with
                # "database is locked" when one upgrades a read lock.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA foreign_keys=ON;"
                    "PRAGMA cache_size=-4000;"
                    f"PRAGMA mmap_size={SQLITE_MMAP_BYTES};"
                ),
            },
            # Tests run against a real SQLite file too, never an in-memory database.
            "TEST": {"NAME": str(DATA_DIR / "test_shortener.sqlite3")},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed, content-hashed names: cached forever by browsers. In
        # DEBUG the plain names are served from the apps' folders instead.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A private instance: creating links needs an API key.
REQUIRE_API_KEY_FOR_CREATE = env.bool("SHORTENER_REQUIRE_API_KEY", default=False)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["links.parsers.BoundedJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {"anon_create": env.str("SHORTENER_ANON_CREATE_RATE", default="60/min")},
    # uvicorn already turned X-Forwarded-For from the trusted proxy into the
    # client address; never read the header again (a client could forge it).
    "NUM_PROXIES": 0,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "links.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "shortener API",
    "DESCRIPTION": "Create short links, follow them, and manage them with an API key.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "BearerAPIKey": {"type": "http", "scheme": "bearer", "description": "manage.py issue_api_key"}
        }
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "links.schema.add_visitor_paths",
    ],
}

# Redis when REDIS_URL is set (redis://host:6379/0): shared by every replica, it holds
# the creation throttle's counters (links/services.take_rate_slot) and Django's cache.
# Without it both live where every worker of one box can reach them (the database, files).
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(SQLITE_PATH.parent / "cache"),
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}

# HTTPS mode: the public address is https (nginx terminates TLS, see
# docker-compose.https.yml). Then cookies travel over HTTPS only and the admin's
# forms may be posted from that origin.
HTTPS_MODE = PUBLIC_BASE_URL.startswith("https://")
if HTTPS_MODE and PUBLIC_BASE_URL not in CSRF_TRUSTED_ORIGINS:
    CSRF_TRUSTED_ORIGINS = [*CSRF_TRUSTED_ORIGINS, PUBLIC_BASE_URL]

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=HTTPS_MODE)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_CONTENT_TYPE_NOSNIFF = True

# Whether a request came over HTTPS is decided by uvicorn, which turns nginx's
# X-Forwarded-Proto into the request's scheme only when it comes from nginx's
# address (FORWARDED_ALLOW_IPS). SECURE_PROXY_SSL_HEADER stays unset on
# purpose: Django would then believe that header from any peer.
SECURE_PROXY_SSL_HEADER = None

if HTTPS_MODE:
    # Both are nginx's job here, because the redirect fast path answers before
    # Django's middleware: nginx sends HSTS on every HTTPS answer, redirects
    # included, and answers plain HTTP with a 308 to https (nginx/app.conf,
    # nginx/entrypoint.sh; tests/test_https_stack.py). Django redirecting too
    # would also break the site while it serves HTTP waiting for a certificate.
    SILENCED_SYSTEM_CHECKS = [
        "security.W004",  # SECURE_HSTS_SECONDS: nginx sends Strict-Transport-Security
        "security.W008",  # SECURE_SSL_REDIRECT: nginx redirects HTTP to HTTPS
    ]

# whitenoise serves the admin's files with synchronous iterators, which Django's
# ASGI handler consumes in a thread: correct, and harmless for a few small files.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
