from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("private/", views.private, name="private"),
    # /oidc/authenticate/, /oidc/callback/ (the redirect URI to register), /oidc/logout/
    path("oidc/", include("mozilla_django_oidc.urls")),
]
