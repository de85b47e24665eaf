// Which page a location shows, and the guard in front of every page that shows data: only a
// signed-in page sees devices and cooks; anything else is sent to sign in first.

import { Code } from "@connectrpc/connect";

export type Route =
  | { kind: "signin" }
  /** `code` is undefined when the link is not a whole setup code. */
  | { kind: "setup"; code: string | undefined }
  | { kind: "app"; hash: string };

/** What is known of the session: not asked yet, signed in, signed out, or the server could
 * not be asked (the page shows what the server will give it, which is nothing unsigned). */
export type SessionState = "unknown" | "signed-in" | "signed-out" | "unverified";

export type Decision =
  | { kind: "show" }
  /** Ask the server who this is first. */
  | { kind: "check" }
  /** Go to `to` (replacing the history entry); `remember` is where to come back to. */
  | { kind: "redirect"; to: string; remember?: string };

export const SIGN_IN = "#/signin";
export const HOME = "#/";

/** The setup code in a setup link's hash (`#/setup/0123456789abcdef`): 16 hex digits. */
export function parseSetupCode(rest: string): string | undefined {
  let code: string;
  try {
    code = decodeURIComponent(rest).trim();
  } catch {
    return undefined;
  }
  return /^[0-9a-f]{16}$/i.test(code) ? code : undefined;
}

export function parseRoute(hash: string): Route {
  if (hash === SIGN_IN || hash.startsWith(`${SIGN_IN}?`)) return { kind: "signin" };
  const setup = /^#\/setup(?:\/(.*))?$/.exec(hash);
  if (setup) return { kind: "setup", code: parseSetupCode(setup[1] ?? "") };
  return { kind: "app", hash: hash === "" || hash === "#" ? HOME : hash };
}

/** Where to go after signing in: the remembered page, if it is one of the app's. */
export function returnRoute(remembered: string | undefined): string {
  if (remembered === undefined || !remembered.startsWith("#/")) return HOME;
  return parseRoute(remembered).kind === "app" ? remembered : HOME;
}

/** The route guard. */
export function decide(route: Route, state: SessionState, remembered?: string): Decision {
  switch (route.kind) {
    case "setup":
      // Creating the first owner needs no session; a signed-in page has no use for it.
      return state === "signed-in" ? { kind: "redirect", to: HOME } : { kind: "show" };
    case "signin":
      if (state === "signed-in") return { kind: "redirect", to: returnRoute(remembered) };
      // A page opened on the sign-in link may still hold a good session.
      return state === "unknown" ? { kind: "check" } : { kind: "show" };
    case "app":
      if (state === "unknown") return { kind: "check" };
      if (state === "signed-out") return { kind: "redirect", to: SIGN_IN, remember: route.hash };
      return { kind: "show" };
  }
}

/** Which setup field a refusal of Setup belongs next to. */
export function setupErrorField(code: Code, message: string): "user" | "password" | "form" {
  if (code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.AlreadyExists || code === Code.FailedPrecondition) {
    return "form";
  }
  if (/password/i.test(message)) return "password";
  if (/user/i.test(message)) return "user";
  return "form";
}
