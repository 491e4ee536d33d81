"""Settings, all read from the environment (prefix WORKBENCH_), with embedded defaults."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


VAR_DIR = Path(env_str("WORKBENCH_VAR_DIR", str(BASE_DIR / "var")))

# Production mode refuses the embedded conveniences instead of silently running with them.
PRODUCTION = env_bool("WORKBENCH_PRODUCTION", False)
DEBUG = env_bool("WORKBENCH_DEBUG", False)
SECRET_KEY = env_str("WORKBENCH_SECRET_KEY", "")
# No `testserver`: Django's test setup adds it for its test client, and outside tests it
# would be one more host a websocket Origin could claim (workbench/origins.py).
ALLOWED_HOSTS = env_list("WORKBENCH_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("WORKBENCH_DEBUG must be off when WORKBENCH_PRODUCTION is on")
    if not SECRET_KEY:
        raise ImproperlyConfigured("WORKBENCH_SECRET_KEY is required in production")
    if any(host.startswith("*") or host == "." for host in ALLOWED_HOSTS):
        raise ImproperlyConfigured("WORKBENCH_ALLOWED_HOSTS may not hold wildcards in production")
    if env_bool("WORKBENCH_HTTPS", True):
        SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not SECRET_KEY:
    SECRET_KEY = "workbench-insecure-development-key"  # embedded default, never in production
# Browsers' Origin header must match one of these (scheme, host and port exactly), or the
# request's own origin, for websockets and CSRF.
CSRF_TRUSTED_ORIGINS = env_list("WORKBENCH_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (websockets) in development
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "core",
    "sandboxes",
    "tasks_app",
    "workbench",
]

MIDDLEWARE = [
    "core.middleware.request_ids",  # first: every line of the request carries its id
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
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
            ]
        },
    }
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# Threads that run HTTP requests in each Daphne process (config.handlers). Requests are
# mostly CPU under one GIL: more threads only move the queue from the pool into the GIL.
WORKBENCH_REQUEST_THREADS = env_int("WORKBENCH_REQUEST_THREADS", 8)
# Request bodies over this many bytes get 413 before they are read (config/server.py,
# config/handlers.py). Every input is a small JSON object; the largest, a 100,000-character
# draft, fits even as \uXXXX escapes.
WORKBENCH_MAX_BODY_BYTES = env_int("WORKBENCH_MAX_BODY_BYTES", 1024 * 1024)
if WORKBENCH_MAX_BODY_BYTES < 1:
    raise ImproperlyConfigured("WORKBENCH_MAX_BODY_BYTES must be a positive number of bytes")
# Django's own bound on a body it reads into memory: the same, so there is one limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = WORKBENCH_MAX_BODY_BYTES

# SQLite by default; DATABASE_URL (postgres://...) switches engines.
_sqlite_path = Path(env_str("WORKBENCH_SQLITE_PATH", str(VAR_DIR / "db.sqlite3")))
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A psycopg pool per process (Django's own), shared by its threads. Sized for
        # Daphne: every request thread (config.handlers) plus the websocket side's: the
        # consumers' shared thread, the snapshot threads (2, when snapshots are not built
        # in builder processes: workbench/snapshots.py), the fan-out hub's reads (2: event
        # log fills and pongs' seqs, workbench/fanout.py) and one spare, so requests never
        # queue for a connection. A builder process has a pool of its own.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("WORKBENCH_DB_POOL_MIN", 1),
            "max_size": env_int("WORKBENCH_DB_POOL_MAX", WORKBENCH_REQUEST_THREADS + 6),
            "timeout": env_float("WORKBENCH_DB_POOL_TIMEOUT", 10.0),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_sqlite_path),
            # Request threads and worker processes are long-lived: keep their connection
            # (connect and PRAGMAs cost ~0.5 ms) instead of opening one per request.
            "CONN_MAX_AGE": env_int("WORKBENCH_SQLITE_CONN_MAX_AGE", 300),
            # IMMEDIATE: take the write lock at BEGIN, so two writers queue on busy_timeout
            # instead of failing with "database is locked" when a reader upgrades.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so Celery workers and Daphne started by integration
            # tests see the same test database.
            # One per test run (pid), so two runs never recreate each other's database.
            "TEST": {
                "NAME": env_str(
                    "WORKBENCH_TEST_SQLITE_PATH", str(VAR_DIR / f"test-{os.getpid()}.sqlite3")
                )
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The browser's markdown renderer and sanitizer, installed by npm (package.json) and served
# as they ship, ES modules without a build step: only the folders holding those files.
STATICFILES_DIRS = [
    ("vendor/marked", BASE_DIR / "node_modules" / "marked" / "lib"),
    ("vendor/dompurify", BASE_DIR / "node_modules" / "dompurify" / "dist"),
]
# The browser workbench (workbench/pages.py) logs in with Django's own views.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6399/0")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request then gets 401 with WWW-Authenticate, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with the nesting depth bounded (a 400, not a RecursionError).
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Scoped throttles (views set throttle_scope), counted in the shared Redis cache
    # (core/throttles.py). Creations are per user; logins per client IP and per username.
    "DEFAULT_THROTTLE_RATES": {
        "tab_create": env_str("WORKBENCH_TAB_CREATE_RATE", "600/min"),
        "message_send": env_str("WORKBENCH_MESSAGE_RATE", "120/min"),
        "task_create": env_str("WORKBENCH_TASK_CREATE_RATE", "60/min"),
        "workspace_create": env_str("WORKBENCH_WORKSPACE_CREATE_RATE", "10/min"),
        # Adding members looks users up by name or email: bounded like a login.
        "member_add": env_str("WORKBENCH_MEMBER_ADD_RATE", "30/min"),
        "login": env_str("WORKBENCH_LOGIN_RATE", "30/min"),
        "login_username": env_str("WORKBENCH_LOGIN_USERNAME_RATE", "10/min"),
        # Websocket connects per user (workbench/socket_quota.py), refused with 4429.
        "socket_connect": env_str("WORKBENCH_SOCKET_CONNECT_RATE", "60/min"),
    },
    # The client IP the login throttle counts is the socket's peer (Daphne sets it; with
    # --proxy-headers, from the proxy's X-Forwarded-For). Without this, DRF would trust an
    # X-Forwarded-For sent by the client itself, so a new fake IP per try would pass.
    "NUM_PROXIES": env_int("WORKBENCH_NUM_PROXIES", 0),
}
CACHES = {
    "default": {
        # django-redis: one connection pool per process, shared by the request threads
        # (docs/benchmarks.md, "Cache backends"). It waits up to 5 s for a free connection
        # when more threads than connections want one, rather than failing past 64.
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env_str("WORKBENCH_CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "workbench",
        "OPTIONS": {
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {"max_connections": 64, "timeout": 5},
        },
    }
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Workbench API",
    "DESCRIPTION": "Agent tabs open at once; sandboxes provision in the background.",
    # Serve Swagger UI's assets ourselves (drf-spectacular-sidecar): no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Two choice sets named `role`: a member's and a message's.
    "ENUM_NAME_OVERRIDES": {
        "MemberRoleEnum": "core.models.Membership.Role",
        "MessageRoleEnum": "workbench.models.MessageRole",
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": env_str(
            "WORKBENCH_CHANNEL_LAYER", "config.channel_layer.ReconnectingRedisPubSubChannelLayer"
        ),
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# Celery: JSON only, at-least-once delivery (late ack, requeue when a worker dies).
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers log through LOGGING above (its ids and format), not Celery's own setup.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SOFT_TIME_LIMIT = env_int("WORKBENCH_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# Redelivery of unacked messages happens after this; it must exceed the longest step.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("WORKBENCH_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300)
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# On a lost broker connection, cancel running late-ack tasks: their messages come back and
# every step is idempotent, so running them again is safe (and Celery 6's default).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    "reconcile-stalled": {
        "task": "workbench.tasks.reconcile",
        "schedule": env_float("WORKBENCH_RECONCILE_INTERVAL", 15.0),
    },
    "prune-events": {"task": "workbench.tasks.prune_events", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Sandboxes and their provisioning.
WORKBENCH_SANDBOX_ROOT = Path(env_str("WORKBENCH_SANDBOX_ROOT", str(VAR_DIR / "sandboxes")))
WORKBENCH_SANDBOX_AGENT_BIN = env_str("WORKBENCH_SANDBOX_AGENT_BIN", "")
# How the local provider confines each sandbox's processes (sandboxes/providers/confinement.py):
# auto (bubblewrap when the host supports it, else unconfined with a warning), bwrap
# (required), none.
WORKBENCH_SANDBOX_ISOLATION = env_str("WORKBENCH_SANDBOX_ISOLATION", "auto")
if WORKBENCH_SANDBOX_ISOLATION not in {"auto", "bwrap", "none"}:
    raise ImproperlyConfigured("WORKBENCH_SANDBOX_ISOLATION must be auto, bwrap or none")
# When the service runs as root, each confined sandbox runs as a host uid of its own from
# this base (50,000 of them); keep the range free of real users.
WORKBENCH_SANDBOX_UID_BASE = env_int("WORKBENCH_SANDBOX_UID_BASE", 200_000)
# The size of a confined sandbox's private /tmp (it is memory).
WORKBENCH_SANDBOX_TMP_BYTES = env_int("WORKBENCH_SANDBOX_TMP_BYTES", 256 * 1024 * 1024)
# Which repositories a task may name (sandboxes/repositories.py): remote URLs of these
# schemes on public hosts, and local paths under these roots (none unless configured: a
# whole home directory holds repositories, keys and stores no team should clone).
WORKBENCH_REPOSITORY_SCHEMES = env_list("WORKBENCH_REPOSITORY_SCHEMES", ["https", "ssh"])
WORKBENCH_REPOSITORY_ROOTS = env_list("WORKBENCH_REPOSITORY_ROOTS", [])
WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS = env_bool(
    "WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS", False
)
# Provisioning runs one workspace may have going at once: the provisioning pool's slots are
# shared by every tenant (Procfile: 4), so one workspace never holds all of them.
WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE = env_int("WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE", 2)
WORKBENCH_PROVIDERS = env_list("WORKBENCH_PROVIDERS", ["local"])
# The remote provider: sandbox-agent servers elsewhere, as JSON [{"url": ..., "token": ...}],
# chosen per sandbox by an allocator class (dotted path; see docs/providers.md).
WORKBENCH_REMOTE_SERVERS = env_str("WORKBENCH_REMOTE_SERVERS", "")
WORKBENCH_REMOTE_ALLOCATOR = env_str(
    "WORKBENCH_REMOTE_ALLOCATOR", "sandboxes.providers.remote.StaticAllocator"
)
WORKBENCH_REMOTE_WORKDIR_ROOT = env_str("WORKBENCH_REMOTE_WORKDIR_ROOT", "/tmp/workbench-sandboxes")
WORKBENCH_AGENTS = env_list(
    "WORKBENCH_AGENTS", ["mock", "claude", "codex", "opencode", "amp", "pi", "cursor"]
)
# Extra seconds the local provider spends in a recorded `simulated_delay` step: stands in
# for a slow provider in benchmarks and tests (0 in normal use).
WORKBENCH_LOCAL_PROVISION_DELAY = env_float("WORKBENCH_LOCAL_PROVISION_DELAY", 0.0)
WORKBENCH_CLONE_TIMEOUT = env_float("WORKBENCH_CLONE_TIMEOUT", 300.0)
WORKBENCH_HEALTH_TIMEOUT = env_float("WORKBENCH_HEALTH_TIMEOUT", 30.0)
WORKBENCH_AGENT_INSTALL_TIMEOUT = env_float("WORKBENCH_AGENT_INSTALL_TIMEOUT", 300.0)
WORKBENCH_SESSION_TIMEOUT = env_float("WORKBENCH_SESSION_TIMEOUT", 120.0)
# The longest one agent turn may run before it counts as failed.
WORKBENCH_PROMPT_TIMEOUT = env_float("WORKBENCH_PROMPT_TIMEOUT", 300.0)
WORKBENCH_MAX_MESSAGE_CHARS = env_int("WORKBENCH_MAX_MESSAGE_CHARS", 32_000)
# Prompts waiting in one tab (sent while it is pending, in error or busy): a bound on what a
# member can pile up in the database for one session, not on what a user would type.
WORKBENCH_MAX_QUEUED_PROMPTS = env_int("WORKBENCH_MAX_QUEUED_PROMPTS", 50)
# A provisioning run holds a lease on its sandbox; another worker may take over only after
# it expires (the holder renews it between steps), so a killed worker never blocks forever.
WORKBENCH_PROVISION_LEASE_SECONDS = env_float("WORKBENCH_PROVISION_LEASE_SECONDS", 30.0)
# A pending tab with no state change or re-drive for this long is re-driven by the
# reconciler, at most _MAX_REDRIVES times (a live provisioning lease counts as progress).
WORKBENCH_STALL_SECONDS = env_float("WORKBENCH_STALL_SECONDS", 20.0)
# Every worker runs the upkeep (reconciler and sandbox health watch), one at a time by a
# Redis lease, this often (workbench/upkeep.py); 0 leaves it to beat alone.
WORKBENCH_UPKEEP_INTERVAL = env_float("WORKBENCH_UPKEEP_INTERVAL", 5.0)
# A ready sandbox whose server has not answered for this long is lost (its tabs: error).
WORKBENCH_HEALTH_GRACE = env_float("WORKBENCH_HEALTH_GRACE", 8.0)
WORKBENCH_MAX_REDRIVES = env_int("WORKBENCH_MAX_REDRIVES", 3)
# A step that keeps dying (the worker killed each time) ends in error after this many
# runs instead of looping: provisioning runs of one sandbox, session starts of one attempt.
WORKBENCH_MAX_PROVISION_RUNS = env_int("WORKBENCH_MAX_PROVISION_RUNS", 5)
WORKBENCH_MAX_SESSION_STARTS = env_int("WORKBENCH_MAX_SESSION_STARTS", 5)
# Separate queues, so slow provisioning never starves session creation or prompts; run a
# worker pool per queue group (Procfile). The reconciler reads their backlog: a queued
# message is not a stalled one.
CELERY_TASK_DEFAULT_QUEUE = "celery"  # reconciler, pruning
CELERY_TASK_ROUTES = {
    "workbench.tasks.provision_sandbox": {"queue": "provision"},
    "workbench.tasks.destroy_sandbox": {"queue": "provision"},
    "workbench.tasks.release_sandbox": {"queue": "provision"},
    "workbench.tasks.open_tab_session": {"queue": "sessions"},
    "workbench.tasks.close_tab_session": {"queue": "sessions"},
    "workbench.tasks.deliver_messages": {"queue": "prompts"},
}
WORKBENCH_WORK_QUEUES = ["provision", "sessions", "prompts", "celery"]
WORKBENCH_EVENT_RETENTION_HOURS = env_float("WORKBENCH_EVENT_RETENTION_HOURS", 72.0)
WORKBENCH_MAX_OPEN_TABS_PER_TASK = env_int("WORKBENCH_MAX_OPEN_TABS_PER_TASK", 200)
# /metrics answers only with `Authorization: Bearer <token>`; without a token it is not
# served at all (404) unless WORKBENCH_METRICS_PUBLIC explicitly opens it to anyone (its
# counts span every tenant).
WORKBENCH_METRICS_TOKEN = env_str("WORKBENCH_METRICS_TOKEN", "")
WORKBENCH_METRICS_PUBLIC = env_bool("WORKBENCH_METRICS_PUBLIC", False)
# Websockets one user may hold open at once, counted in Redis across every Daphne process
# (workbench/socket_quota.py); more are closed with 4429. A socket's entry is refreshed
# while it lives and ignored once older than WORKBENCH_SOCKET_STALE_SECONDS, so a Daphne
# that dies leaks nothing for longer than that.
WORKBENCH_MAX_SOCKETS_PER_USER = env_int("WORKBENCH_MAX_SOCKETS_PER_USER", 20)
# Client frames per socket (workbench/consumers.py FrameBudget): a second, and in a burst.
# The browser sends a ping every 10 s and a view per tab switch.
WORKBENCH_SOCKET_FRAME_RATE = env_float("WORKBENCH_SOCKET_FRAME_RATE", 10.0)
WORKBENCH_SOCKET_FRAME_BURST = env_int("WORKBENCH_SOCKET_FRAME_BURST", 40)
WORKBENCH_SOCKET_STALE_SECONDS = env_float("WORKBENCH_SOCKET_STALE_SECONDS", 90.0)
# Snapshots (and resumes) are built in this many builder processes of each Daphne (0: on
# WORKBENCH_SNAPSHOT_THREADS threads of its own process), at most WORKBENCH_SNAPSHOTS_PER_USER
# at once per user and Daphne, so one user's flood of connects queues behind itself, not in
# front of everyone, and no build holds the GIL other sockets' frames need
# (workbench/snapshots.py, docs/benchmarks.md "Socket flood").
WORKBENCH_SNAPSHOT_PROCESSES = env_int("WORKBENCH_SNAPSHOT_PROCESSES", 2)
WORKBENCH_SNAPSHOT_THREADS = env_int("WORKBENCH_SNAPSHOT_THREADS", 2)
WORKBENCH_SNAPSHOTS_PER_USER = env_int("WORKBENCH_SNAPSHOTS_PER_USER", 1)
# One page of the workbench (the snapshot is the first; workbench/workbench_pages.py): at
# most this many tasks and open tabs, and about this many bytes of JSON, so a frame stays
# far under Daphne's 1 MiB limit whatever the workspace holds.
WORKBENCH_PAGE_TASKS = env_int("WORKBENCH_PAGE_TASKS", 50)
WORKBENCH_PAGE_TABS = env_int("WORKBENCH_PAGE_TABS", 200)
WORKBENCH_PAGE_BYTES = env_int("WORKBENCH_PAGE_BYTES", 512 * 1024)
# A fan-out hub that receives an event before an earlier one of its workspace holds it this
# long for the earlier one, then reads the missing ones from the event log, so each socket gets
# its events in seq order (workbench/fanout.py; docs/benchmarks.md, "Event order").
WORKBENCH_STREAM_GAP_WAIT_MS = env_float("WORKBENCH_STREAM_GAP_WAIT_MS", 50.0)
if WORKBENCH_STREAM_GAP_WAIT_MS < 0:
    raise ImproperlyConfigured("WORKBENCH_STREAM_GAP_WAIT_MS must not be negative")
WORKBENCH_MAX_OPEN_TABS_PER_USER = env_int("WORKBENCH_MAX_OPEN_TABS_PER_USER", 500)

# Every line carries the ids of the request, Celery task, workspace, task, sandbox and tab it
# is about (core/logs.py); `json` writes one JSON object a line for a log pipeline.
WORKBENCH_LOG_FORMAT = env_str("WORKBENCH_LOG_FORMAT", "text")
if WORKBENCH_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("WORKBENCH_LOG_FORMAT must be text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ids": {"()": "core.logs.IdsFilter"}},
    "formatters": {
        "text": {"()": "core.logs.TextFormatter"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": WORKBENCH_LOG_FORMAT,
            "filters": ["ids"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("WORKBENCH_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
