// A real relying party against portvakt: openid-client v6 (OpenID-certified), as a public
// client (token_endpoint_auth_method none, PKCE S256), plus a confidential client that
// introspects. Discovery, the code flow with state, nonce and RFC 9207 `iss`, a login driven
// through portvakt's own HTML forms with fetch, ID token validation by the library, userinfo,
// refresh rotation, introspection before and after revocation, and revocation.
//
// Prints one JSON line: {"ok": true, "checks": [...]}, or {"ok": false, "step", "error",
// "checks"} and exits 1 at the first failure.
//
//   node rp.mjs --issuer http://127.0.0.1:8080 --client-id <public client> \
//     --redirect-uri http://localhost:9/callback \
//     --introspect-client-id <confidential client> --introspect-client-secret <secret> \
//     --email a@example.com --password '...'

import * as client from 'openid-client';

const TIMEOUT_MS = 20_000;
const MAX_HOPS = 12;

class Failure extends Error {}

function expect(condition, message) {
  if (!condition) throw new Failure(message);
}

function parseArgs(argv) {
  const wanted = [
    'issuer',
    'client-id',
    'redirect-uri',
    'introspect-client-id',
    'introspect-client-secret',
    'email',
    'password',
  ];
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    if (!wanted.includes(key) || argv[i + 1] === undefined) {
      throw new Failure(`unknown or incomplete argument ${argv[i]}`);
    }
    args[key] = argv[i + 1];
  }
  for (const key of wanted) {
    if (args[key] === undefined) throw new Failure(`missing --${key}`);
  }
  return args;
}

// ---------------------------------------------------------------------------------------
// Driving portvakt's HTML pages like a browser without JavaScript: fetch, a cookie jar, and
// the forms' named fields (hidden ones included).

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'" };

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+|#39);/gi, (whole, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[name.toLowerCase()] ?? whole;
  });
}

function attributes(tag) {
  const attrs = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // Skip the tag name itself.
  const body = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

function parseForms(html) {
  const forms = [];
  for (const m of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[0].slice(0, m[0].indexOf('>') + 1));
    const inner = m[1];
    const fields = [];
    const buttons = [];
    for (const input of inner.matchAll(/<input\b[^>]*>/gi)) {
      const a = attributes(input[0]);
      const type = (a.type ?? 'text').toLowerCase();
      if (type === 'submit' || type === 'image') buttons.push({ name: a.name, value: a.value ?? '' });
      else if (a.name) fields.push({ name: a.name, type, value: a.value ?? '' });
    }
    for (const button of inner.matchAll(/<button\b[^>]*>([\s\S]*?)<\/button>/gi)) {
      const a = attributes(button[0].slice(0, button[0].indexOf('>') + 1));
      if ((a.type ?? 'submit').toLowerCase() === 'submit') {
        buttons.push({ name: a.name, value: a.value ?? '', text: button[1].replace(/<[^>]*>/g, '').trim() });
      }
    }
    forms.push({ action: attrs.action ?? '', method: (attrs.method ?? 'get').toLowerCase(), fields, buttons });
  }
  return forms;
}

function fill(form, email, password) {
  const names = new Set(form.fields.map((f) => f.name));
  const data = form.fields.filter((f) => f.type !== 'checkbox' && f.type !== 'radio').map((f) => [f.name, f.value]);
  if (names.has('password')) {
    return ['login', data.map(([n, v]) => [n, n === 'email' ? email : n === 'password' ? password : v])];
  }
  const decisions = form.buttons.filter((b) => b.name === 'decision');
  if (decisions.length > 0) {
    expect(decisions.some((b) => b.value === 'allow'), 'the consent form has no decision=allow button');
    return ['consent', [...data, ['decision', 'allow']]];
  }
  if (names.has('code')) throw new Failure('portvakt asked for an MFA code, but the test user has no MFA');
  return null;
}

class Browser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    if (this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }

  // Follows portvakt from `url` through its forms until it redirects to `redirectUri`.
  async drive(url, redirectUri, email, password) {
    const pages = [];
    let current = new URL(url);
    let response = await this.request(current);
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      if (response.status >= 300 && response.status < 400) {
        const location = new URL(response.headers.get('location'), current);
        if (`${location.origin}${location.pathname}` === redirectUri) return { callback: location, pages };
        current = location;
        response = await this.request(current);
        continue;
      }
      const text = await response.text();
      expect(response.status === 200, `${current} answered ${response.status}: ${text.slice(0, 500)}`);
      let chosen = null;
      let action = null;
      for (const form of parseForms(text)) {
        chosen = fill(form, email, password);
        if (chosen) {
          action = new URL(form.action, current);
          break;
        }
      }
      expect(chosen, `no login or consent form on ${current}: ${text.slice(0, 500)}`);
      const [kind, data] = chosen;
      pages.push(kind);
      current = action;
      response = await this.request(action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(data).toString(),
      });
      if (kind === 'login' && response.status === 401) {
        throw new Failure("portvakt refused the test user's email and password on its login form");
      }
    }
    throw new Failure(`no redirect to ${redirectUri} after ${MAX_HOPS} hops (pages: ${pages})`);
  }
}

// ---------------------------------------------------------------------------------------

function describe(e) {
  if (e instanceof Failure) return e.message;
  const parts = [e.name ?? 'Error', e.code, e.error, e.error_description, e.message, e.status && `HTTP ${e.status}`];
  if (e.cause instanceof Response) parts.push(`HTTP ${e.cause.status} from ${e.cause.url}`);
  else if (e.cause && e.cause !== e) parts.push(`cause: ${e.cause.message ?? JSON.stringify(e.cause)}`);
  return parts.filter(Boolean).join(': ');
}

async function expectGrantError(promise, what) {
  try {
    await promise;
  } catch (e) {
    expect(e.error === 'invalid_grant', `${what}: ${describe(e)}, expected invalid_grant`);
    return;
  }
  throw new Failure(`${what}: it still worked`);
}

async function main() {
  const checks = [];
  let step = 'arguments';
  try {
    const args = parseArgs(process.argv.slice(2));
    const issuer = new URL(args.issuer);
    const insecure = issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : {};

    step = 'discovery';
    const config = await client.discovery(
      issuer,
      args['client-id'],
      { token_endpoint_auth_method: 'none', id_token_signed_response_alg: 'RS256' },
      client.None(),
      insecure,
    );
    const meta = config.serverMetadata();
    expect(meta.issuer === args.issuer, `discovery issuer ${meta.issuer} is not ${args.issuer}`);
    expect(meta.authorization_response_iss_parameter_supported === true, 'discovery does not promise `iss` (RFC 9207)');
    expect(meta.supportsPKCE('S256'), 'discovery does not list S256');
    expect(meta.introspection_endpoint && meta.revocation_endpoint, 'discovery lacks introspection or revocation');
    checks.push('discovery');

    const introspector = await client.discovery(
      issuer,
      args['introspect-client-id'],
      args['introspect-client-secret'],
      client.ClientSecretPost(args['introspect-client-secret']),
      insecure,
    );

    step = 'authorize';
    const browser = new Browser();
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: args['redirect-uri'],
      scope: 'openid profile email',
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const { callback, pages } = await browser.drive(url, args['redirect-uri'], args.email, args.password);
    expect(pages.join() === 'login,consent', `expected the login then the consent page, saw [${pages}]`);
    expect(callback.searchParams.get('iss') === args.issuer, `iss ${callback.searchParams.get('iss')} in the authorization response`);
    checks.push('login_and_consent_forms');

    step = 'token';
    // The library checks state, iss (RFC 9207), the ID token's signature, iss, aud, exp,
    // nonce, and PKCE through the verifier.
    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    expect(claims?.sub, 'no ID token claims');
    expect(claims.email === args.email, `ID token email ${claims.email}`);
    expect(tokens.refresh_token, 'no refresh token for a client with the refresh_token grant');
    checks.push('code_flow_pkce_public_client', 'id_token_validated_by_library');

    step = 'userinfo';
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info.email === args.email, `userinfo email ${info.email}`);
    checks.push('userinfo');

    step = 'refresh';
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    expect(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'the refresh did not rotate the refresh token');
    expect(refreshed.access_token !== tokens.access_token, 'the refresh gave the same access token');
    if (refreshed.id_token) expect(refreshed.claims().sub === claims.sub, 'the refreshed ID token names another subject');
    checks.push('refresh_rotates');

    step = 'introspection';
    const live = await client.tokenIntrospection(introspector, refreshed.access_token);
    expect(live.active === true, `introspection of a live access token: ${JSON.stringify(live)}`);
    expect(live.sub === claims.sub, `introspection sub ${live.sub}`);
    expect(live.client_id === args['client-id'], `introspection client_id ${live.client_id}`);
    checks.push('introspection_active');

    step = 'revocation';
    await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    checks.push('revocation');

    step = 'introspection_after_revocation';
    const dead = await client.tokenIntrospection(introspector, refreshed.access_token);
    expect(dead.active === false, `introspection after revoking the grant: ${JSON.stringify(dead)}`);
    checks.push('introspection_inactive_after_revocation');

    step = 'refresh_after_revocation';
    await expectGrantError(client.refreshTokenGrant(config, refreshed.refresh_token), 'refresh after revocation');
    checks.push('refresh_fails_after_revocation');
  } catch (e) {
    return report(false, checks, step, describe(e));
  }
  return report(true, checks);
}

function report(ok, checks, step, error) {
  const line = { rp: 'openid-client', ok, checks };
  if (!ok) Object.assign(line, { step, error });
  process.stdout.write(`${JSON.stringify(line)}\n`);
  if (!ok) process.stderr.write(`openid-client RP failed at ${step}: ${error}\n`);
  return ok ? 0 : 1;
}

process.exitCode = await main();
