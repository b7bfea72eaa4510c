"""A minimal Django site that signs its users in with portvakt (OpenID Connect).

Everything that differs between deployments comes from the environment:

    PORTVAKT_ISSUER        portvakt's issuer URL, e.g. https://id.example.com
    OIDC_RP_CLIENT_ID      the client id portvakt gave this app
    OIDC_RP_CLIENT_SECRET  its client secret
    DJANGO_SECRET_KEY      Django's own signing key
    DJANGO_DEBUG           "1" for development (plain http cookies)
    DJANGO_DB_PATH         where the SQLite database lives (default: db.sqlite3 here)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "mozilla_django_oidc",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portvakt_example.urls"
WSGI_APPLICATION = "portvakt_example.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- OpenID Connect with portvakt ----------------------------------------------------------

AUTHENTICATION_BACKENDS = ["portvakt_example.auth.PortvaktBackend"]

PORTVAKT_ISSUER = os.environ["PORTVAKT_ISSUER"].rstrip("/")
OIDC_RP_CLIENT_ID = os.environ["OIDC_RP_CLIENT_ID"]
OIDC_RP_CLIENT_SECRET = os.environ["OIDC_RP_CLIENT_SECRET"]

# portvakt's endpoints, as its /.well-known/openid-configuration lists them.
OIDC_OP_AUTHORIZATION_ENDPOINT = PORTVAKT_ISSUER + "/oauth2/authorize"
OIDC_OP_TOKEN_ENDPOINT = PORTVAKT_ISSUER + "/oauth2/token"
OIDC_OP_USER_ENDPOINT = PORTVAKT_ISSUER + "/oauth2/userinfo"
OIDC_OP_JWKS_ENDPOINT = PORTVAKT_ISSUER + "/oauth2/jwks"
PORTVAKT_END_SESSION_ENDPOINT = PORTVAKT_ISSUER + "/oauth2/logout"

OIDC_RP_SIGN_ALGO = "RS256"  # portvakt's default ID token algorithm
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True  # S256, which portvakt requires for public clients and accepts for all
OIDC_TOKEN_USE_BASIC_AUTH = True  # the client is registered as client_secret_basic
OIDC_STORE_ID_TOKEN = True  # the id_token_hint of RP-initiated logout
OIDC_OP_LOGOUT_URL_METHOD = "portvakt_example.auth.provider_logout_url"
OIDC_TIMEOUT = 10

LOGIN_URL = "/oidc/authenticate/"
LOGIN_REDIRECT_URL = "/private/"
LOGOUT_REDIRECT_URL = "/"
