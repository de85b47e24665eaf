// Signing in: user name and password. The server answers with HttpOnly session cookies the
// page never sees; its refusals (a wrong password, too many tries) are shown in its words.

import { Code, ConnectError } from "@connectrpc/connect";
import { auth } from "../api";
import { h } from "../dom";
import { providerName, providerSignIn } from "../provider";
import type { WhoAmIResponse } from "../gen/emberline/v1/emberline_pb";

/** A refusal in the server's words; the network's failures in ours. */
export function refusal(e: unknown): string {
  const err = ConnectError.from(e);
  if (err.code === Code.Unavailable || err.code === Code.Unknown) return `Cannot reach Emberline: ${err.rawMessage}`;
  return err.rawMessage;
}

export function field(label: string, input: HTMLInputElement, error?: HTMLElement): HTMLLabelElement {
  return h("label", {}, h("span", {}, label), input, error ?? null);
}

/** An error line tied to its field (announced, and described-by for screen readers). */
export function fieldError(id: string): HTMLParagraphElement {
  return h("p", { class: "field-error", id, role: "alert", hidden: true });
}

export function showError(el: HTMLElement, message: string, input?: HTMLInputElement): void {
  el.textContent = message;
  el.hidden = message === "";
  if (input) {
    if (message) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", el.id);
    } else {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
  }
}

export function renderSignIn(root: HTMLElement, signedIn: (caller: WhoAmIResponse | undefined) => void, notice = ""): void {
  const user = h("input", { type: "text", name: "user", required: true, autocomplete: "username", autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { type: "password", name: "password", required: true, autocomplete: "current-password" });
  const error = fieldError("signin-error");
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "auth-form", "aria-labelledby": "signin-title" },
    field("User name", user),
    field("Password", password),
    error,
    submit,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    showError(error, "");
    submit.disabled = true;
    auth
      .signIn({ user: user.value.trim(), password: password.value, cookie: true })
      .then((r) => signedIn(r.caller))
      .catch((err: unknown) => {
        showError(error, refusal(err), password);
        password.select();
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  // "Sign in with …": offered when the server has an OpenID provider for browsers; the
  // server runs the flow (authorization code with PKCE) and sets the same session cookie.
  const provider = h("p", { class: "auth-provider", hidden: true });
  void providerSignIn().then((issuer) => {
    if (!issuer) return;
    const link = h("a", { href: "/auth/oidc/login", class: "button", id: "oidc-sign-in" }, `Sign in with ${providerName(issuer)}`);
    provider.replaceChildren(link);
    provider.hidden = false;
  });
  root.replaceChildren(
    h("section", { class: "auth" }, h("h2", { id: "signin-title" }, "Sign in"), notice ? h("p", { class: "facts notice" }, notice) : null, form, provider),
  );
  user.focus();
}
