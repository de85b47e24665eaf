// Sign-in through an OpenID provider: whether the server offers it, and the button's name.

/** The provider's issuer when the server offers sign-in through it, else undefined. */
export async function providerSignIn(): Promise<string | undefined> {
  try {
    const r = await fetch("/auth/oidc/info", { credentials: "same-origin" });
    if (!r.ok) return undefined;
    const info = (await r.json()) as { available?: boolean; issuer?: string };
    return info.available ? (info.issuer ?? "your provider") : undefined;
  } catch {
    return undefined;
  }
}

/** A short name for a provider: the issuer's host. */
export function providerName(issuer: string): string {
  try {
    return new URL(issuer).host;
  } catch {
    return issuer;
  }
}
