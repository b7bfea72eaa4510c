#!/usr/bin/env python3
"""A real relying party against portvakt: Authlib's OAuth 2 client over httpx.

Discovery, the code flow with PKCE (S256), state and nonce, a login driven through
portvakt's own HTML forms (login, consent), the token exchange with client_secret_basic,
ID token validation with Authlib's OpenID claims (JWKS, iss, aud, nonce, at_hash), userinfo,
refresh token rotation and reuse, and RP-initiated logout.

Prints one JSON line: {"ok": true, "checks": [...], ...}, or {"ok": false, "step", "error",
"checks"} and exits 1 at the first failure.

    python authlib_rp.py --issuer http://127.0.0.1:8080 --client-id ... --client-secret ... \
        --redirect-uri http://localhost:9/callback \
        --post-logout-redirect-uri http://localhost:9/signed-out \
        --email a@example.com --password '...'
"""

import argparse
import json
import secrets
import sys
import warnings
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import authlib.deprecate  # noqa: F401 (installs its warning filter first)
import httpx

# Authlib 1.9 announces on import that it will move to httpx2; httpx 0.28 is what it uses now.
# (Set after importing authlib.deprecate, whose own "always" filter would come first.)
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

TIMEOUT = 20.0
MAX_HOPS = 12


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


# ---------------------------------------------------------------------------------------
# Driving portvakt's HTML pages like a browser without JavaScript.


class Forms(HTMLParser):
    """Every <form> with its named inputs and submit buttons."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._form = None
        self._button = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {
                "action": a.get("action") or "",
                "method": (a.get("method") or "get").lower(),
                "fields": [],
                "buttons": [],
            }
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "image"):
                self._form["buttons"].append({"name": a.get("name"), "value": a.get("value") or "", "text": a.get("value") or ""})
            elif a.get("name"):
                self._form["fields"].append({"name": a["name"], "type": kind, "value": a.get("value") or ""})
        elif tag == "button":
            kind = (a.get("type") or "submit").lower()
            if kind == "submit":
                self._button = {"name": a.get("name"), "value": a.get("value") or "", "text": ""}
                self._form["buttons"].append(self._button)

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if tag == "button":
            self._button = None


def parse_forms(html):
    parser = Forms()
    parser.feed(html)
    return parser.forms


def fill(form, email, password):
    """The fields to post for one of portvakt's pages, or None when we cannot handle it."""
    names = {f["name"] for f in form["fields"]}
    data = [(f["name"], f["value"]) for f in form["fields"] if f["type"] not in ("checkbox", "radio")]
    if "password" in names:
        data = [(n, email if n == "email" else password if n == "password" else v) for n, v in data]
        return "login", data
    decisions = [b for b in form["buttons"] if b["name"] == "decision"]
    if decisions:
        allow = [b for b in decisions if b["value"] == "allow"]
        expect(allow, f"the consent form has no decision=allow button: {decisions}")
        return "consent", data + [("decision", "allow")]
    if "code" in names:
        raise Failure("portvakt asked for an MFA code, but the test user has no MFA")
    return None


def drive(http, url, redirect_uri, email, password):
    """Follows portvakt from `url` through its forms until it redirects to `redirect_uri`.

    Returns (the redirect URL with its query, the pages seen)."""
    pages = []
    response = http.get(url)
    for _ in range(MAX_HOPS):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.split("?")[0] == redirect_uri:
                return location, pages
            response = http.get(location)
            continue
        text = response.text
        expect(
            response.status_code == 200,
            f"{response.request.method} {response.url} answered {response.status_code}: {text[:500]}",
        )
        expect("text/html" in response.headers.get("content-type", ""), f"{response.url} is not an HTML page")
        forms = parse_forms(text)
        chosen = None
        for form in forms:
            chosen = fill(form, email, password)
            if chosen:
                action = urljoin(str(response.url), form["action"])
                break
        expect(chosen, f"no login or consent form on {response.url}: {text[:500]}")
        kind, data = chosen
        pages.append(kind)
        # httpx takes a dict for `data`; a list keeps the form's order and repeated names.
        response = http.post(
            action,
            content=urlencode(data),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        if kind == "login" and response.status_code == 401:
            raise Failure("portvakt refused the test user's email and password on its login form")
    raise Failure(f"no redirect to {redirect_uri} after {MAX_HOPS} hops (pages: {pages})")


# ---------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser()
    for name in ("issuer", "client-id", "client-secret", "redirect-uri", "post-logout-redirect-uri", "email", "password"):
        p.add_argument("--" + name, required=True)
    args = p.parse_args()

    checks = []
    state = {"step": "start"}

    def step(name):
        state["step"] = name

    def ok(name):
        checks.append(name)

    try:
        # A fresh cookie jar: portvakt's browser session lives in it, like in a browser.
        browser = httpx.Client(follow_redirects=False, timeout=TIMEOUT)

        step("discovery")
        issuer = args.issuer
        r = httpx.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=TIMEOUT)
        expect(r.status_code == 200, f"discovery answered {r.status_code}: {r.text[:300]}")
        meta = r.json()
        expect(meta.get("issuer") == issuer, f"discovery issuer {meta.get('issuer')!r} is not {issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"):
            expect(isinstance(meta.get(key), str), f"discovery has no {key}")
        expect("S256" in meta.get("code_challenge_methods_supported", []), "discovery does not list S256")
        expect("RS256" in meta.get("id_token_signing_alg_values_supported", []), "discovery does not list RS256")
        ok("discovery")

        client = OAuth2Client(
            client_id=args.client_id,
            client_secret=args.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            redirect_uri=args.redirect_uri,
            scope="openid profile email",
            code_challenge_method="S256",
            timeout=TIMEOUT,
        )

        def authorize():
            """One authorization request through the browser; returns (token, nonce, pages)."""
            code_verifier = secrets.token_urlsafe(48)
            nonce = secrets.token_urlsafe(16)
            url, sent_state = client.create_authorization_url(
                meta["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
            )
            callback, pages = drive(browser, url, args.redirect_uri, args.email, args.password)
            query = parse_qs(urlsplit(callback).query)
            expect("error" not in query, f"authorization failed: {query}")
            expect(query.get("code"), f"no code in {callback}")
            expect(query.get("state") == [sent_state], f"state {query.get('state')} is not the one sent")
            if meta.get("authorization_response_iss_parameter_supported"):
                expect(query.get("iss") == [issuer], f"iss {query.get('iss')} in the authorization response is not {issuer}")
            token = client.fetch_token(
                meta["token_endpoint"],
                authorization_response=callback,
                state=sent_state,
                code_verifier=code_verifier,
            )
            return token, nonce, pages

        def id_token_claims(token, nonce):
            key_set = KeySet.import_key_set(jwks)
            decoded = jwt.decode(
                token["id_token"],
                key=key_set,
                registry=JWSRegistry(algorithms=meta["id_token_signing_alg_values_supported"], strict_check_header=False),
            )
            expect(decoded.header.get("alg") == "RS256", f"ID token alg {decoded.header.get('alg')}, expected RS256")
            params = {"client_id": args.client_id, "access_token": token["access_token"]}
            if nonce is not None:
                params["nonce"] = nonce
            claims = CodeIDToken(decoded.claims, decoded.header, {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": args.client_id}}, params)
            claims.validate(leeway=60)
            return claims

        step("authorize")
        token, nonce, pages = authorize()
        expect(pages == ["login", "consent"], f"expected the login then the consent page, saw {pages}")
        expect(token.get("token_type", "").lower() == "bearer", f"token_type {token.get('token_type')}")
        for key in ("access_token", "id_token", "refresh_token"):
            expect(token.get(key), f"the token response has no {key}")
        ok("authorize_with_pkce_state_nonce_iss")
        ok("token_exchange_client_secret_basic")

        step("id_token")
        r = httpx.get(meta["jwks_uri"], timeout=TIMEOUT)
        expect(r.status_code == 200, f"jwks answered {r.status_code}")
        jwks = r.json()
        claims = id_token_claims(token, nonce)
        expect(claims.get("at_hash"), "the ID token has no at_hash")
        expect(claims.get("email") == args.email, f"ID token email {claims.get('email')!r}")
        expect(claims.get("auth_time"), "the ID token has no auth_time")
        sub = claims["sub"]
        ok("id_token_signature_iss_aud_nonce_at_hash")

        step("userinfo")
        r = httpx.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer " + token["access_token"]}, timeout=TIMEOUT)
        expect(r.status_code == 200, f"userinfo answered {r.status_code}: {r.text[:300]}")
        info = r.json()
        expect(info.get("sub") == sub, f"userinfo sub {info.get('sub')!r} is not the ID token's {sub!r}")
        expect(info.get("email") == args.email, f"userinfo email {info.get('email')!r}")
        ok("userinfo")

        step("refresh")
        old_refresh = token["refresh_token"]
        refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
        new_refresh = refreshed.get("refresh_token")
        expect(new_refresh and new_refresh != old_refresh, "the refresh did not rotate the refresh token")
        expect(refreshed.get("access_token") and refreshed["access_token"] != token["access_token"], "no new access token")
        if refreshed.get("id_token"):
            refreshed_claims = id_token_claims(refreshed, None)
            expect(refreshed_claims["sub"] == sub, "the refreshed ID token names another subject")
        ok("refresh_rotates")

        step("refresh_reuse")
        try:
            client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
            raise Failure("the already used refresh token worked again")
        except AuthlibBaseError as e:
            expect(e.error == "invalid_grant", f"reused refresh token: {e.error} ({e.description}), expected invalid_grant")
        ok("old_refresh_token_invalid_grant")
        # Reuse revokes the whole grant (API.md: rotation and reuse rules as for API sessions).
        try:
            client.refresh_token(meta["token_endpoint"], refresh_token=new_refresh)
            raise Failure("after a reuse, the newest refresh token of that grant still worked")
        except AuthlibBaseError as e:
            expect(e.error == "invalid_grant", f"newest refresh token after reuse: {e.error}, expected invalid_grant")
        ok("reuse_revokes_grant")

        step("single_sign_on")
        # The browser session still lives: a second authorization needs no login and no consent.
        token2, nonce2, pages2 = authorize()
        expect(pages2 == [], f"a second authorization showed pages {pages2} despite a live session and consent")
        claims2 = id_token_claims(token2, nonce2)
        expect(claims2["sub"] == sub, "the second ID token names another subject")
        expect(token2.get("refresh_token"), "the second token response has no refresh_token")
        ok("second_authorization_uses_browser_session")

        step("logout")
        logout_state = secrets.token_urlsafe(12)
        params = {
            "id_token_hint": token2["id_token"],
            "post_logout_redirect_uri": args.post_logout_redirect_uri,
            "state": logout_state,
        }
        r = browser.get(meta["end_session_endpoint"], params=params)
        # A confirmation page is allowed by the spec, but portvakt skips it with a valid hint.
        expect(r.is_redirect, f"logout answered {r.status_code}, expected a redirect: {r.text[:300]}")
        location = urljoin(str(r.url), r.headers["location"])
        expect(location.split("?")[0] == args.post_logout_redirect_uri, f"logout redirected to {location}")
        expect(parse_qs(urlsplit(location).query).get("state") == [logout_state], f"logout redirect lost the state: {location}")
        ok("rp_initiated_logout_redirects_with_state")

        step("refresh_after_logout")
        try:
            client.refresh_token(meta["token_endpoint"], refresh_token=token2["refresh_token"])
            raise Failure("the refresh token still works after RP-initiated logout")
        except AuthlibBaseError as e:
            expect(e.error == "invalid_grant", f"refresh after logout: {e.error} ({e.description}), expected invalid_grant")
        ok("refresh_token_dies_with_logout")

        step("login_after_logout")
        # The browser session is gone: portvakt asks for the password again.
        _, _, pages3 = authorize()
        expect(pages3 and pages3[0] == "login", f"after logout the next authorization showed {pages3}, expected the login page")
        ok("logout_ends_browser_session")
    except Failure as e:
        return report(False, checks, state["step"], str(e))
    except AuthlibBaseError as e:
        return report(False, checks, state["step"], f"{type(e).__name__}: {e.error}: {e.description}")
    except (httpx.HTTPError, ValueError, KeyError) as e:
        return report(False, checks, state["step"], f"{type(e).__name__}: {e}")
    except Exception as e:  # joserfc's and anything else's errors: still one JSON line
        return report(False, checks, state["step"], f"{type(e).__name__}: {e}")
    return report(True, checks)


def report(success, checks, step=None, error=None):
    line = {"rp": "authlib", "ok": success, "checks": checks}
    if not success:
        line["step"] = step
        line["error"] = error
    print(json.dumps(line), flush=True)
    if not success:
        print(f"authlib RP failed at {step}: {error}", file=sys.stderr)
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
