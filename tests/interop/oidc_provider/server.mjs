// A certified OpenID Provider (panva/oidc-provider) for authrelay's interop tests.
//
// Usage: node server.mjs [--port N] [--issuer URL] [--config FILE] [--profile NAME]
//   or the environment: OP_PORT, OP_ISSUER, OP_CONFIG (a path to a JSON file), OP_PROFILE.
//
// Profiles (the JSON "profile" member, overridden by --profile / OP_PROFILE):
//   "default"          access tokens of a code flow without `resource` are opaque and
//                      good for UserInfo;
//   "resource-server"  resource indicators with a default resource for the relying party
//                      (the JSON "default_resource", else the first JWT resource): a code
//                      flow without `resource` gets an RFC 9068 JWT access token for that
//                      API, which UserInfo refuses, as many certified deployments do.
//   "token-exchange"   "default" plus a small RFC 8693 token-exchange grant (oidc-provider
//                      has none built in): the relying party's client may exchange an
//                      opaque access token it holds for one for a configured resource.
//   "par"              "default" with pushed authorization requests required (RFC 9126):
//                      a plain authorization request is refused.
//
// The JSON configuration written by tests/interop/conftest.py:
//   {
//     "clients": {
//       "rp":  {"client_id", "client_secret", "redirect_uris", "post_logout_redirect_uris"},
//       "api": {"client_id", "client_secret"}
//     },
//     "initial_access_token": "...",       // enables dynamic client registration
//     "resources": {
//       "api://orders": {"scopes": ["orders.read", "orders.write"], "format": "jwt"},
//       "api://inventory": {"scopes": ["inventory.read"], "format": "opaque"}, ...
//     }
//   }
//
// oidc-provider cannot introspect or revoke JWT access tokens, so opaque resources exist
// for RFC 7662 / RFC 7009 interop.
//
// It is a test fixture: plain http on 127.0.0.1, in-memory storage, a fresh RSA
// signing key per process, any login accepted. Nothing here is fit for production.
// The process exits when its standard input closes, so it never outlives the test
// session that started it.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

// oidc-provider announces development defaults on the console; those notices are
// expected here and would only bury real errors. Everything else still goes to stderr.
const quiet = (original) => (...args) => {
  if (typeof args[0] === 'string' && /^oidc-provider (NOTICE|WARNING):/.test(args[0])) {
    return;
  }
  original.apply(console, args);
};
console.info = quiet(console.info);
console.warn = quiet(console.warn);
console.log = quiet(console.log);

const { default: Provider, errors } = await import('oidc-provider');

const { values: argv } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    config: { type: 'string' },
    profile: { type: 'string' },
  },
});

const port = Number.parseInt(argv.port ?? process.env.OP_PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0) {
  console.error('server.mjs: a port is required (--port N or OP_PORT)');
  process.exit(2);
}
const issuer = argv.issuer ?? process.env.OP_ISSUER ?? `http://127.0.0.1:${port}`;
const configPath = argv.config ?? process.env.OP_CONFIG;
const config = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};

const rp = {
  client_id: 'rp-client',
  client_secret: 'rp-secret',
  redirect_uris: ['http://127.0.0.1/auth/op/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1/'],
  ...config.clients?.rp,
};
const api = { client_id: 'api-client', client_secret: 'api-secret', ...config.clients?.api };
const resources = config.resources ?? {
  'api://orders': { scopes: ['orders.read', 'orders.write'], format: 'jwt' },
  'https://notes.local': { scopes: ['notes.read', 'notes.write'], format: 'jwt' },
  'api://inventory': { scopes: ['inventory.read', 'inventory.write'], format: 'opaque' },
};

const ACCESS_TOKEN_TTL = 300;

const profile = argv.profile ?? process.env.OP_PROFILE ?? config.profile ?? 'default';
const PROFILES = ['default', 'resource-server', 'token-exchange', 'par'];
if (!PROFILES.includes(profile)) {
  console.error(`server.mjs: unknown profile ${profile} (one of ${PROFILES.join(', ')})`);
  process.exit(2);
}
const defaultResourceOf = profile === 'resource-server'
  ? config.default_resource
    ?? Object.keys(resources).find((key) => resources[key].format === 'jwt')
  : undefined;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `rs256-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: rp.client_id,
      client_secret: rp.client_secret,
      // "native" lets a loopback redirect URI match on any port (RFC 8252 §7.3): the
      // relying parties under test bind free ports chosen after this server starts.
      application_type: 'native',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [
        'authorization_code', 'refresh_token', 'client_credentials',
        ...(profile === 'token-exchange' ? [TOKEN_EXCHANGE] : []),
      ],
      response_types: ['code'],
      redirect_uris: rp.redirect_uris,
      post_logout_redirect_uris: rp.post_logout_redirect_uris,
    },
    {
      client_id: api.client_id,
      client_secret: api.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', ...new Set(Object.values(resources).flatMap((r) => r.scopes))],
  // The access token of a code flow is for the resource server, not for UserInfo, so
  // the relying party reads the profile from the ID token.
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: id.charAt(0).toUpperCase() + id.slice(1),
          email: `${id}@example.test`,
          email_verified: true,
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    pushedAuthorizationRequests: {
      enabled: true,
      requirePushedAuthorizationRequests: profile === 'par',
    },
    backchannelLogout: { enabled: true },
    registration: {
      enabled: Boolean(config.initial_access_token),
      initialAccessToken: config.initial_access_token ?? false,
    },
    resourceIndicators: {
      enabled: true,
      // "resource-server": the relying party's tokens are for its API unless it asks
      // for another resource; "default": no resource, an opaque UserInfo token.
      defaultResource: async (_ctx, client, oneOf) => oneOf
        ?? (client?.clientId === api.client_id ? undefined : defaultResourceOf),
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const resource = resources[resourceIndicator];
        if (!resource) {
          throw new errors.InvalidTarget();
        }
        const info = {
          scope: resource.scopes.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: ACCESS_TOKEN_TTL,
          accessTokenFormat: resource.format,
        };
        // RFC 9068 JWT access tokens, RS256 only.
        return resource.format === 'jwt' ? { ...info, jwt: { sign: { alg: 'RS256' } } } : info;
      },
    },
  },
  // RFC 7636; oidc-provider 9 accepts S256 only.
  pkce: { required: () => true },
  // Refresh tokens for every client allowed the grant, whether or not the relying party
  // asked for offline_access with prompt=consent; rotated at every use (RFC 9700 §4.14.2).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 120,
    ClientCredentials: ACCESS_TOKEN_TTL,
    IdToken: ACCESS_TOKEN_TTL,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  jwks: { keys: [signingKey] },
  // RFC 9700 §2.1.2: no implicit or hybrid response types.
  responseTypes: ['code'],
  clientBasedCORS: () => true,
  // Outgoing requests (back-channel logout tokens) go to relying parties on 127.0.0.1,
  // which the default SSRF guard refuses as special-use addresses; this test provider
  // only ever talks to loopback, so the guard's dispatcher is dropped here.
  fetch: (url, options) => {
    const { dispatcher: _guard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.proxy = false;

// RFC 8693 for the "token-exchange" profile: the subject must be an active (opaque)
// access token of this provider; the new token is for one configured resource (audience
// or resource), carries the subject's account, the requested scopes that resource has,
// and ends no later than the subject token (§2.1, §2.2).
async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  if (!params.subject_token || params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token with an access_token subject_token_type is required');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens are issued');
  }
  const subject = await provider.AccessToken.find(params.subject_token);
  if (!subject || subject.isExpired) {
    throw new errors.InvalidGrant('subject_token is not an active access token');
  }
  const target = params.audience ?? params.resource;
  const resource = resources[target];
  if (!resource) {
    throw new errors.InvalidTarget();
  }
  const offered = new Set(resource.scopes);
  const scope = (params.scope ?? '').split(' ').filter((s) => offered.has(s)).join(' ');
  const remaining = subject.exp - Math.floor(Date.now() / 1000);
  const token = new provider.AccessToken({
    accountId: subject.accountId,
    client,
    grantId: subject.grantId,
    gty: 'token_exchange',
    scope: scope || undefined,
  });
  token.resourceServer = new provider.ResourceServer(target, {
    audience: target,
    scope: resource.scopes.join(' '),
    accessTokenTTL: Math.max(1, Math.min(ACCESS_TOKEN_TTL, remaining)),
    accessTokenFormat: resource.format,
    ...(resource.format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
  });
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: token.scope || undefined,
  };
}
if (profile === 'token-exchange') {
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    tokenExchange,
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope'],
    ['audience', 'resource'],
  );
}

provider.on('server_error', (_ctx, err) => {
  console.error('oidc-provider server_error:', err);
});
provider.on('backchannel.error', (_ctx, err, client) => {
  console.error(`oidc-provider backchannel.error for ${client.clientId}:`, err.message, err.cause?.code ?? '', err.cause?.message ?? '');
});
provider.on('backchannel.success', (_ctx, client) => {
  console.log(`oidc-provider backchannel.success for ${client.clientId}`);
});

// Static clients are otherwise validated on first use; a bad redirect URI from the Python
// side should stop the start, not surface later as a puzzling login failure.
for (const clientId of [rp.client_id, api.client_id]) {
  try {
    await provider.Client.find(clientId);
  } catch (err) {
    console.error(`server.mjs: client ${clientId} is invalid: ${err.error_description ?? err.message}`);
    process.exit(1);
  }
}

const server = provider.listen(port, '127.0.0.1');
server.on('error', (err) => {
  console.error(`server.mjs: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent holds our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
