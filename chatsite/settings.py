"""Chatsite settings: every value comes from the environment, with safe defaults.

A fresh checkout runs on SQLite with an in-process channel layer; production sets
DATABASE_URL (PostgreSQL) and REDIS_URL (Celery broker + channel layer). See .env.example.
"""

import os
import uuid
from datetime import timedelta
from pathlib import Path

import environ
from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A local .env is a convenience for development; real deployments set the environment.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-do-not-use-in-production")
else:
    # No default: a production process without a secret must fail loudly, not run with a known key.
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Log-in throttling (accounts/login_throttle.py).
    "axes",
    # The Content-Security-Policy header (CONTENT_SECURITY_POLICY below).
    "csp",
    # The HTTP API (conversations/api); listed so its docs page uses the bundled swagger-ui files.
    "ninja",
    "accounts",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "chatsite.staticfiles.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a throttled log-in into the "too many attempts" page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
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
                "conversations.context_processors.chatsite",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed during the runner's checkpoints; IMMEDIATE avoids upgrade deadlocks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A file, not shared-cache memory: the runner writes from worker threads, and shared-cache
    # SQLite uses table locks that ignore the busy timeout.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
elif env.str("CHATSITE_TEST_DB_NAME", default=""):
    # Set by scripts/runtests.py: test runs side by side on one server get their own databases.
    DATABASES["default"]["TEST"] = {"NAME": env.str("CHATSITE_TEST_DB_NAME")}
CHATSITE_DB_POOL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("CHATSITE_DB_POOL", default=True)
if CHATSITE_DB_POOL:
    # PostgreSQL through psycopg's connection pool (Django 5.1+), one pool per process. Under
    # ASGI every request and every DB thread would otherwise keep a connection of its own
    # (173 held after 300 page loads at concurrency 32 with CONN_MAX_AGE=60: "too many
    # clients"). A connection goes back to the pool after each request or ORM call (hence
    # CONN_MAX_AGE 0) and is checked when taken out, so the first request after a database
    # restart gets a working connection instead of a dead one. Sizing: docs/reliability.md.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("CHATSITE_DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("CHATSITE_DB_POOL_MAX_SIZE", default=10),
        # How long a request waits for a free connection (or for the database to come back)
        # before it fails; a send then gets "the database is not reachable", text kept.
        "timeout": env.float("CHATSITE_DB_POOL_TIMEOUT", default=5.0),
        "max_idle": 60.0,
        "name": "chatsite",
    }
else:
    # Keep connections between calls (the async code's DB threads would otherwise reconnect
    # on every call); health checks drop broken ones.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A health check is one more round trip per ORM call from async code: opt-in.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer -------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="chatsite")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatsite.channel_layer.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis's blocking
                # BZPOPMIN timeout: reads then fail at random with "Timeout reading". Give it room.
                # Its async pool also caps at 100 connections and raises when they are all busy
                # (a burst of replies ending at once); allow bursts instead of losing messages.
                # driver_info=None: no CLIENT SETINFO, and no importlib.metadata lookup (about 1 ms
                # of CPU) for every new connection of a burst.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5,
                           "max_connections": env.int("REDIS_MAX_CONNECTIONS", default=1000), "driver_info": None}],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=1000),
                "expiry": 60,
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    # Single-process fallback; `make run` always provides a Redis (real or embedded).
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task (OOM, SIGKILL) leaves its message unacknowledged; Redis hands it to
# another worker after the visibility timeout. Tasks are idempotent, so a redelivery is safe.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.float("CHATSITE_CELERY_VISIBILITY_TIMEOUT", default=3600.0),
    # A hung or restarting Redis must not hold a publishing thread for ever (kombu's default
    # has no socket timeout); publishing retries a few times, then gives up (logged).
    "socket_timeout": 5.0,
    "socket_connect_timeout": 3.0,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 3.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_TASK_DEFAULT_QUEUE = env.str("CHATSITE_CELERY_QUEUE", default="celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-stale-generations": {
        "task": "conversations.tasks.reap_stale_generations",
        "schedule": env.float("CHATSITE_REAPER_INTERVAL", default=10.0),
        # A reap queued while no worker ran is worthless later; don't let them pile up.
        "options": {"expires": 10.0},
    },
}

# --- Caches -------------------------------------------------------------------------------
# "default" stays per process (login throttling counts in it). "rendered" holds the sanitised
# HTML of finished messages (conversations/htmlcache.py): shared through Redis when there is one.
# The default cache holds rate-limit and log-in throttle counters: in Redis they hold across
# every daphne process; without Redis (single process) in memory.
CACHE_KEY_PREFIX = env.str("CHATSITE_CACHE_PREFIX", default="chatsite")
# Redis failures degrade both to this process's memory for a few seconds at a time instead of
# failing requests (chatsite/cache.py); no retries and short timeouts, so a hung Redis costs a
# request at most one short wait before the process stops asking it.
_CACHE_REDIS_OPTIONS = {
    "socket_connect_timeout": 1, "socket_timeout": 1, "retry": Retry(NoBackoff(), 0),
    "FAILOVER_RETRY_SECONDS": env.float("CHATSITE_CACHE_FAILOVER_SECONDS", default=5.0),
}
CACHES = {
    "default": (
        {"BACKEND": "chatsite.cache.FailoverRedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": CACHE_KEY_PREFIX,
         "OPTIONS": dict(_CACHE_REDIS_OPTIONS)}
        if REDIS_URL else
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    ),
    "rendered": (
        {"BACKEND": "chatsite.cache.FailoverRedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "chatsite-html",
         "OPTIONS": dict(_CACHE_REDIS_OPTIONS)}
        if REDIS_URL else
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "chatsite-rendered", "OPTIONS": {"MAX_ENTRIES": 20_000}}
    ),
}

# --- Anthropic ------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="") or None
ANTHROPIC_TIMEOUT = env.float("ANTHROPIC_TIMEOUT", default=120.0)
ANTHROPIC_CONNECT_TIMEOUT = env.float("ANTHROPIC_CONNECT_TIMEOUT", default=10.0)
ANTHROPIC_MAX_RETRIES = env.int("ANTHROPIC_MAX_RETRIES", default=3)
# The UI badge: on when no real key is configured (make run then uses the bundled fake server).
CHATSITE_OFFLINE_DEMO = env.bool("CHATSITE_OFFLINE_DEMO", default=not ANTHROPIC_API_KEY)

# Models, prices, the default and the utility model live in the database (Django admin).
CHATSITE_MAX_TOKENS = env.int("CHATSITE_MAX_TOKENS", default=4096)
# Seconds a process keeps admin-edited models/prices/presets/spend limits before reading them again.
CHATSITE_CATALOG_CACHE_SECONDS = env.float("CHATSITE_CATALOG_CACHE_SECONDS", default=5.0)

# --- Cost: caching and compaction -------------------------------------------------------------
CHATSITE_PROMPT_CACHING = env.bool("CHATSITE_PROMPT_CACHING", default=True)
# Compact when a conversation's context passes this share of the model's window or this many
# tokens, whichever is lower; fold old turns until it is under LOW_WATER_RATIO of that.
CHATSITE_COMPACT_HIGH_WATER_SHARE = env.float("CHATSITE_COMPACT_HIGH_WATER_SHARE", default=0.5)
CHATSITE_CONTEXT_BUDGET_TOKENS = env.int("CHATSITE_CONTEXT_BUDGET_TOKENS", default=40_000)
CHATSITE_COMPACT_LOW_WATER_RATIO = env.float("CHATSITE_COMPACT_LOW_WATER_RATIO", default=0.5)
# Headroom kept free in the context window (the token estimate is approximate).
CHATSITE_CONTEXT_SAFETY_TOKENS = env.int("CHATSITE_CONTEXT_SAFETY_TOKENS", default=2_000)
# A compaction claim lasts this long unless its worker renews it (every third of it, while it
# works); a worker that died is known gone after this long, or at once on its own machine.
CHATSITE_COMPACTION_CLAIM_SECONDS = env.float("CHATSITE_COMPACTION_CLAIM_SECONDS", default=30.0)
CHATSITE_SUMMARY_MAX_TOKENS = env.int("CHATSITE_SUMMARY_MAX_TOKENS", default=1500)
CHATSITE_TITLE_MAX_TOKENS = env.int("CHATSITE_TITLE_MAX_TOKENS", default=30)
# Room for thinking on top of a title's or summary's max tokens, on models whose thinking cannot be
# turned off (conversations/utility.py). A limit, not a cost: only the tokens used are billed.
CHATSITE_UTILITY_THINKING_TOKENS = env.int("CHATSITE_UTILITY_THINKING_TOKENS", default=2048)
CHATSITE_MAX_INPUT_CHARS = env.int("CHATSITE_MAX_INPUT_CHARS", default=100_000)
# Largest conversation export (JSON) a person may import, in bytes.
CHATSITE_IMPORT_MAX_BYTES = env.int("CHATSITE_IMPORT_MAX_BYTES", default=20_000_000)

# --- Workspace: delete with undo ------------------------------------------------------------
# A deleted conversation can be restored for this many seconds; then a Celery beat task
# (running as often) removes it for good. Its spend stays in the usage ledger.
CHATSITE_UNDO_DELETE_SECONDS = env.float("CHATSITE_UNDO_DELETE_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["purge-deleted-conversations"] = {
    "task": "conversations.tasks.purge_deleted_conversations",
    "schedule": max(1.0, CHATSITE_UNDO_DELETE_SECONDS),
    "options": {"expires": max(1.0, CHATSITE_UNDO_DELETE_SECONDS)},
}

# --- Streaming engine -----------------------------------------------------------------------
# Before the first token, failed attempts are retried (on top of the SDK's own HTTP retries)
# while this much time is left; after the first token the partial is kept instead.
CHATSITE_RETRY_BUDGET_SECONDS = env.float("CHATSITE_RETRY_BUDGET_SECONDS", default=30.0)
# When Claude sends nothing at all (not even a ping) for this long, the person is told; after
# STALL_TIMEOUT the attempt is given up (retried before the first token, else the reply ends
# as `timeout` with its text kept).
CHATSITE_STALL_NOTICE_SECONDS = env.float("CHATSITE_STALL_NOTICE_SECONDS", default=15.0)
CHATSITE_STALL_TIMEOUT_SECONDS = env.float("CHATSITE_STALL_TIMEOUT_SECONDS", default=90.0)
# Threads per process for ORM work people wait on (sends, follows); checkpoints get their own.
# SQLite has one writer at a time: a second thread only adds lock waits.
CHATSITE_DB_THREADS = env.int("CHATSITE_DB_THREADS", default=1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 2)
# sys.setswitchinterval for the web process (seconds; Python's default is 0.005). Shorter lets the
# ORM threads storing sends run sooner while the loop relays; measured with `make bench`.
CHATSITE_GIL_SWITCH_INTERVAL = env.float("CHATSITE_GIL_SWITCH_INTERVAL", default=0.001)
CHATSITE_CHECKPOINT_SECONDS = env.float("CHATSITE_CHECKPOINT_SECONDS", default=1.0)
CHATSITE_DELTA_BATCH_SECONDS = env.float("CHATSITE_DELTA_BATCH_SECONDS", default=0.04)
# Helper processes that render finished replies' markdown off the web process's GIL (0: a thread).
CHATSITE_RENDER_PROCESSES = env.int("CHATSITE_RENDER_PROCESSES", default=1)
# A reply whose rendering takes longer is shown as plain text (and the helper replaced).
CHATSITE_RENDER_TIMEOUT_SECONDS = env.float("CHATSITE_RENDER_TIMEOUT_SECONDS", default=10.0)
CHATSITE_HEARTBEAT_STALE_SECONDS = env.float("CHATSITE_HEARTBEAT_STALE_SECONDS", default=20.0)
# A finished reply whose end cannot be stored (the database is down) is kept in memory and its
# write retried with backoff for this long; its runner says it is alive in Redis meanwhile, so
# the reaper leaves it alone (docs/reliability.md).
CHATSITE_FINAL_WRITE_RETRY_SECONDS = env.float("CHATSITE_FINAL_WRITE_RETRY_SECONDS", default=3600.0)
# How long a runner's "alive" key outlives its last renewal (renewed every second): a process
# that died is known dead to the reaper after this long (and its heartbeat going stale).
CHATSITE_LIVENESS_TTL_SECONDS = env.float("CHATSITE_LIVENESS_TTL_SECONDS", default=5.0)
# Longest pause between two tries of such a write.
CHATSITE_FINAL_WRITE_BACKOFF_MAX_SECONDS = env.float("CHATSITE_FINAL_WRITE_BACKOFF_MAX_SECONDS", default=2.0)
# A message for another process (a relayed frame, a follow) that Redis has not taken after this
# many seconds is given up and retried later: a hung Redis must not hold up live replies.
CHATSITE_RELAY_SEND_TIMEOUT_SECONDS = env.float("CHATSITE_RELAY_SEND_TIMEOUT_SECONDS", default=2.0)
# Count SQL writes per process (shown on /chat/ops/streams.json; used by bench/streams.py).
CHATSITE_COUNT_DB_WRITES = env.bool("CHATSITE_COUNT_DB_WRITES", default=False)
# Identifies this OS process in heartbeats, so a reaper can tell whose generations died.
CHATSITE_PROCESS_ID = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

# --- Auth and accounts ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: a throttled log-in is refused before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"
CHATSITE_SIGNUP_OPEN = env.bool("CHATSITE_SIGNUP_OPEN", default=True)
# HTTP API rate limits per token (or browser session): "<count>/<s|m|h|d>"; empty turns a limit off.
# Kept in Django's cache: per process with the default local-memory cache.
CHATSITE_API_RATE = env.str("CHATSITE_API_RATE", default="120/m")
CHATSITE_API_SEND_RATE = env.str("CHATSITE_API_SEND_RATE", default="20/m")
# Websocket limits (conversations/wslimits.py), same format: frames one socket may send (past
# twice that in one window it is disconnected), and replies one person may start (sends,
# edits, retries, continues) over all their sockets.
CHATSITE_WS_FRAME_RATE = env.str("CHATSITE_WS_FRAME_RATE", default="120/m")
CHATSITE_WS_SEND_RATE = env.str("CHATSITE_WS_SEND_RATE", default="20/m")

# An open websocket closes when its session ends: at once on log-out, a new password,
# deactivation or deletion (accounts.sessions), at its expiry, and in any case it re-checks its
# session this often (seconds), should an event have been lost.
CHATSITE_SOCKET_SESSION_CHECK_SECONDS = env.float("CHATSITE_SOCKET_SESSION_CHECK_SECONDS", default=300.0)
# Log-in throttling (django-axes, accounts/login_throttle.py): failed log-ins counted per client
# address and per username, each with its own limit, in the default cache, for this long.
# The per-account limit is the higher one: a single address cannot lock someone else out.
CHATSITE_LOGIN_FAILURES_PER_ADDRESS = env.int("CHATSITE_LOGIN_FAILURES_PER_ADDRESS", default=10)
CHATSITE_LOGIN_FAILURES_PER_ACCOUNT = env.int("CHATSITE_LOGIN_FAILURES_PER_ACCOUNT", default=30)
CHATSITE_LOGIN_LOCKOUT_MINUTES = env.float("CHATSITE_LOGIN_LOCKOUT_MINUTES", default=15.0)
# How many reverse proxies stand in front of daphne, each appending the address it was reached
# from to X-Forwarded-For (nginx: proxy_add_x_forwarded_for). 0: the TCP peer is the client.
# With N, the client is the N-th address from the right of X-Forwarded-For: entries further left
# are whatever the client sent, and are never trusted. Run daphne WITHOUT --proxy-headers.
CHATSITE_TRUSTED_PROXIES = env.int("CHATSITE_TRUSTED_PROXIES", default=0)
AXES_HANDLER = "accounts.login_throttle.LoginThrottle"
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # two counters, in login_throttle's order
AXES_FAILURE_LIMIT = max(CHATSITE_LOGIN_FAILURES_PER_ADDRESS, CHATSITE_LOGIN_FAILURES_PER_ACCOUNT)
AXES_COOLOFF_TIME = timedelta(minutes=CHATSITE_LOGIN_LOCKOUT_MINUTES)
# A refused attempt neither counts nor extends the lock; a success resets nothing (else anyone
# with an account of their own could reset their address's count between guesses).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/login_throttled.html"
AXES_ENABLE_ADMIN = False  # the counts live in the cache, not in axes' tables
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "accounts.login_throttle.client_address"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chatsite@localhost")

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
# HTTPS only: redirect http:// to https:// (behind a proxy, BEHIND_PROXY tells them apart), and
# HSTS: browsers then refuse plain HTTP for this long. Turn HSTS on once HTTPS works for every
# host name it covers (a browser remembers it); both stay off by default (`make run` is HTTP).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): scripts only from this site's own files, never inline
# (data for scripts goes in json_script blocks), no plugins, no framing, forms post here only.
# Inline style *attributes* stay allowed (KaTeX's layout, table cell alignment, the usage bars);
# style sheets come from this site. Browser tests fail on any violation (tests/conftest.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],  # (the websocket: same host, ws: or wss:)
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- I18N, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
# Serve straight from the source dirs: no collectstatic step for `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx2": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # failed log-ins and lock-outs, not every successful one
    },
}
