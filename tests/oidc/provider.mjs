// A real OpenID Connect provider for the tests: panva's certified `oidc-provider`
// with one confidential client, static accounts, a plain HTML login form and
// automatic consent. Loopback and plain http only; never use it for anything else.
//
// Usage: node tests/oidc/provider.mjs settings.json
//
// settings.json:
//   {
//     "port": 9000,                            // listens on 127.0.0.1:<port>
//     "issuer": "http://127.0.0.1:9000",       // optional, this is the default
//     "client": {
//       "client_id": "labspace",
//       "client_secret": "s3cret",
//       "redirect_uris": ["http://127.0.0.1:8000/hub/oauth_callback"],
//       "token_endpoint_auth_method": "client_secret_basic"  // optional, the default
//     },
//     "accounts": [
//       {"sub": "u-1", "username": "alice", "password": "pw", "email": "alice@example.org",
//        "name": "Alice", "groups": ["staff"]}
//     ]
//   }
//
// Scopes: openid, profile (name, preferred_username), email (email, email_verified),
// groups (groups), offline_access. Claims are in both the ID token and userinfo.
// Refresh tokens are issued on every code exchange (no offline_access needed).
// PKCE (S256) is accepted but not required.
//
// Test hook, loopback only:
//   POST /test-admin/accounts/<username>/groups   body: JSON list of group names
// replaces the account's groups; new logins, refreshes and userinfo calls see them.
//
// Prints `READY <issuer>` on stdout once listening; exits 0 on SIGTERM or SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const port = Number(settings.port);
const issuer = settings.issuer || `http://127.0.0.1:${port}`;
const accounts = new Map(settings.accounts.map((a) => [a.username, { ...a }]));
const bySub = (sub) => [...accounts.values()].find((a) => a.sub === sub);

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

const provider = new Provider(issuer, {
  clients: [{
    token_endpoint_auth_method: 'client_secret_basic',
    ...settings.client,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  jwks: { keys: [{ ...signingKey.export({ format: 'jwk' }), kid: 'test', use: 'sig', alg: 'RS256' }] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    long: { signed: true, sameSite: 'lax' },
    short: { signed: true, sameSite: 'lax' },
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false, // scope claims in the ID token too, not only userinfo
  features: { devInteractions: { enabled: false } },
  pkce: { methods: ['S256'], required: () => false },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400 },
  // automatic consent: grant exactly what the client asked for
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.account.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, sub) => {
    if (!bySub(sub)) return undefined;
    return {
      accountId: sub,
      claims: async () => {
        const a = bySub(sub); // read at call time: group changes show up
        return {
          sub, name: a.name, preferred_username: a.username, email: a.email,
          email_verified: true, groups: [...a.groups],
        };
      },
    };
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<p class="error">${esc(out.error)}: ${esc(out.error_description)}</p>`);
  },
});

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function loginForm(uid, error = '', login = '') {
  return page('Sign in to the test provider', `
    ${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
    <form method="post" action="/interaction/${esc(uid)}">
      <label>Username <input name="login" value="${esc(login)}" autofocus></label>
      <label>Password <input name="password" type="password"></label>
      <button type="submit">Sign in</button>
    </form>`);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': `${type}; charset=utf-8`, 'Cache-Control': 'no-store' });
  res.end(body);
}

async function interaction(req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, 'text/html', page('Error', `<p class="error">${esc(err.message)}</p>`));
  }
  if (details.prompt.name !== 'login') {
    // consent never gets here: loadExistingGrant grants everything requested
    return send(res, 500, 'text/plain', `unexpected prompt ${details.prompt.name}`);
  }
  if (req.method === 'GET') return send(res, 200, 'text/html', loginForm(uid));

  const form = new URLSearchParams(await readBody(req));
  const account = accounts.get(form.get('login'));
  if (!account || account.password !== form.get('password')) {
    return send(res, 200, 'text/html', loginForm(uid, 'Invalid username or password.', form.get('login')));
  }
  return provider.interactionFinished(req, res, { login: { accountId: account.sub } },
    { mergeWithLastSubmission: false });
}

async function setGroups(req, res, username) {
  const remote = req.socket.remoteAddress;
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(remote)) {
    return send(res, 403, 'application/json', JSON.stringify({ error: 'loopback only' }));
  }
  const account = accounts.get(username);
  if (!account) return send(res, 404, 'application/json', JSON.stringify({ error: `no account ${username}` }));
  let groups;
  try {
    groups = JSON.parse(await readBody(req));
  } catch {
    groups = null;
  }
  if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) {
    return send(res, 400, 'application/json', JSON.stringify({ error: 'body must be a JSON list of strings' }));
  }
  account.groups = groups;
  return send(res, 200, 'application/json', JSON.stringify({ username, groups }));
}

const oidc = provider.callback();
const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, issuer);
  const inter = pathname.match(/^\/interaction\/([^/]+)$/);
  const admin = pathname.match(/^\/test-admin\/accounts\/([^/]+)\/groups$/);
  let handled;
  if (inter && ['GET', 'POST'].includes(req.method)) handled = interaction(req, res, inter[1]);
  else if (admin && req.method === 'POST') handled = setGroups(req, res, decodeURIComponent(admin[1]));
  else return oidc(req, res);
  return handled.catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error');
    else res.end();
  });
});

server.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
