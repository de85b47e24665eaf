// Live share links: a page opened at `/s/<token>` shows one cook, read only, to whoever has
// the link. The token is the link's secret: it travels as `authorization: Bearer <token>` on
// every call and is kept nowhere (not in storage, not in cookies).

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Where share links live on the web origin. */
export const SHARE_PREFIX = "/s/";

/** Whether a page at `pathname` is a share link's page. */
export function isSharePath(pathname: string): boolean {
  return pathname.startsWith(SHARE_PREFIX);
}

/** The token of a share link's path (the rest of the path; "" when there is none or it is
 * not a well-formed token), or undefined when the path is not a share link's. */
export function shareTokenOf(pathname: string): string | undefined {
  if (!isSharePath(pathname)) return undefined;
  let rest = pathname.slice(SHARE_PREFIX.length).replace(/\/+$/, "");
  try {
    rest = decodeURIComponent(rest);
  } catch {
    return "";
  }
  // A header value cannot hold spaces, slashes or control characters: such a path is no
  // token, and is not worth a call.
  return /^[A-Za-z0-9._~+=-]+$/.test(rest) ? rest : "";
}

/** The full address of a share link: the page's origin and the path the server gave. */
export function shareUrl(origin: string, path: string): string {
  return `${origin.replace(/\/+$/, "")}${path.startsWith("/") ? path : `/${path}`}`;
}

/** Who may create share links: a signed-in owner or cook (not a viewer, not a link). */
export function canShare(caller: { role: string; scope: string } | undefined): boolean {
  return caller !== undefined && caller.scope === "" && (caller.role === "owner" || caller.role === "cook");
}

/** How a page is shown: to a signed-in user, or read only through a share link. */
export type PageMode = "signed-in" | "share";

/** What a cook page offers, by mode: a share link's page only looks. */
export interface PageControls {
  /** "← All devices" and any other way to other pages. */
  navigation: boolean;
  /** Acknowledging alerts. */
  acknowledge: boolean;
  /** CSV downloads. */
  export: boolean;
  /** Creating and ending share links (also needs `canShare`). */
  share: boolean;
  /** Signing out, the planner, the signed-in user's name. */
  session: boolean;
}

export function pageControls(mode: PageMode): PageControls {
  const signedIn = mode === "signed-in";
  return { navigation: signedIn, acknowledge: signedIn, export: signedIn, share: signedIn, session: signedIn };
}

/** Whether `e` says the share link no longer works (revoked, expired or never valid). */
export function linkEnded(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

/**
 * Sends the share token with every call. A call refused as Unauthenticated means the link has
 * ended (revoked or expired): `ended` is told, and there is nothing to renew.
 */
export function shareInterceptor(token: string, ended: () => void): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    try {
      const res = await next(req);
      if (!res.stream) return res;
      // A stream may be refused in its body, before its first message.
      const opened = res;
      async function* messages(): AsyncGenerator<unknown> {
        try {
          yield* opened.message;
        } catch (e) {
          if (linkEnded(e)) ended();
          throw e;
        }
      }
      return { ...opened, message: messages() } as typeof res;
    } catch (e) {
      if (linkEnded(e)) ended();
      throw e;
    }
  };
}
