"""mozilla-django-oidc, with the ID token checks OpenID Connect Core 3.1.3.7 asks of every
client that the library leaves out (`iss`, `aud`, `azp`), users keyed by portvakt's stable
`sub` rather than by email, and RP-initiated logout."""

from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend


class PortvaktBackend(OIDCAuthenticationBackend):
    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)  # signature (JWKS), exp, nonce
        if payload.get("iss") != settings.PORTVAKT_ISSUER:
            raise SuspiciousOperation("ID token from another issuer")
        audience = payload.get("aud")
        audience = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audience:
            raise SuspiciousOperation("ID token for another client")
        if len(audience) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("ID token authorized for another party")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        claims = super().get_userinfo(access_token, id_token, payload)
        # OIDC Core 5.3.4: userinfo must be about the subject of the ID token.
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo is about another subject")
        return claims

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=claims["sub"])

    def create_user(self, claims):
        return self.UserModel.objects.create_user(claims["sub"], email=claims.get("email", ""))

    def update_user(self, user, claims):
        email = claims.get("email", "")
        if user.email != email:
            user.email = email
            user.save(update_fields=["email"])
        return user


def provider_logout_url(request):
    """Where /oidc/logout/ sends the browser: portvakt's end_session_endpoint, which ends the
    portvakt session too and comes back to this site's home page."""
    params = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(settings.LOGOUT_REDIRECT_URL),
    }
    id_token = request.session.get("oidc_id_token")
    if id_token:
        params["id_token_hint"] = id_token
    return settings.PORTVAKT_END_SESSION_ENDPOINT + "?" + urlencode(params)
