// An OpenID provider on loopback for Emberline's tests:
// `node provider.mjs PORT KEYS_FILE [rotate]`. KEYS_FILE holds {"keys": [private JWKs]}
// (made on first start); the first signs. With `rotate`, a new key is put first (the old
// ones stay published, as a provider rotating its keys does). Clients use the
// client-credentials grant and receive JWT access tokens for the `emberline` audience,
// carrying the tenant and role the client id names (`<tenant>.<role>`, e.g. `default.viewer`).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import Provider from "oidc-provider";

const [port, keysFile, rotate] = process.argv.slice(2);
const newKey = () => ({
  ...generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }),
  kid: randomBytes(8).toString("hex"),
  alg: "ES256",
  use: "sig",
});
const jwks = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, "utf8")) : { keys: [] };
if (jwks.keys.length === 0 || rotate === "rotate") jwks.keys.unshift(newKey());
writeFileSync(keysFile, JSON.stringify(jwks));
const issuer = `http://127.0.0.1:${port}`;
const clientIds = ["default.owner", "default.viewer", "next-door.owner", "default.nonsense"];
// The web UI's client, when its callback is given: a public client (PKCE), whose users
// sign in on the provider's development login page with the account name
// `<tenant>.<role>` and any password.
const webRedirect = process.env.EMBERLINE_WEB_REDIRECT;
const resource = "https://emberline.test/api";
const webClients = webRedirect
  ? [{
      client_id: "emberline-web",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: [webRedirect],
      id_token_signed_response_alg: "ES256",
    }]
  : [];

const provider = new Provider(issuer, {
  jwks,
  clients: clientIds.map((id) => ({
    client_id: id,
    client_secret: `secret-of-${id}`,
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
    id_token_signed_response_alg: "ES256",
  })).concat(webClients),
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  // The web UI is first-party: no consent page.
  loadExistingGrant: async (ctx) => {
    const existing = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    if (ctx.oidc.client.clientId !== "emberline-web") return undefined;
    const grant = new ctx.oidc.provider.Grant({
      clientId: "emberline-web",
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid");
    grant.addResourceScope(resource, "api");
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: Boolean(webRedirect) },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "api",
        audience: "emberline",
        accessTokenTTL: 600,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "ES256" } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    const who = String(token.accountId ?? token.clientId);
    const [tenant, role] = who.split(".");
    return { emberline_tenant: tenant, emberline_role: role, preferred_username: who };
  },
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc provider listening on ${issuer} signing with ${jwks.keys[0].kid}`);
});
