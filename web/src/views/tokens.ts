// The Settings page's API tokens, for scripts and connectors: the tenant's tokens (name,
// what they may do, since when, until when), a form to make one — shown once, with a Copy
// button, since Emberline keeps only its hash — and Revoke. Owners only, as the server
// decides.

import { tokens } from "../api";
import { h } from "../dom";
import type { ApiToken } from "../gen/emberline/v1/emberline_pb";
import { placeRefusalIn } from "../settingsform";

type Say = (text: string, bad?: boolean) => void;

const TOKEN_FIELDS = ["name", "scope", "expires_at_ms"] as const;

/** What each scope lets a token do, as the form offers them. */
const SCOPES: readonly [string, string][] = [
  ["read", "read: dashboards, Home Assistant"],
  ["control", "control: also targets, cooks and alerts"],
  ["ingest", "ingest: push readings only"],
];

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function day(ms: bigint | undefined): string {
  return ms === undefined ? "never" : new Date(Number(ms)).toLocaleDateString();
}

function row(t: ApiToken, refresh: () => void, say: Say): HTMLElement {
  const revoke = h("button", { type: "button", class: "remove", "data-testid": `revoke-token-${t.name}` }, "Revoke");
  revoke.addEventListener("click", () => {
    tokens
      .revokeToken({ id: t.id })
      .then(() => {
        say(`Revoked ${t.name}: it no longer works.`);
        refresh();
      })
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), TOKEN_FIELDS).text, true));
  });
  return h(
    "li",
    { class: "channel token", "data-token": t.name },
    h("strong", {}, t.name),
    h("span", { class: "kind" }, t.scope),
    h("span", { class: "target" }, `made ${day(t.createdAtMs)} · expires ${day(t.expiresAtMs)}`),
    revoke,
  );
}

/** The API tokens section of the Settings page. */
export function tokensSection(): HTMLElement {
  const list = h("ul", { class: "channels", "data-testid": "tokens" });
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite" });
  const say: Say = (text, bad = false) => {
    said.textContent = text;
    said.classList.toggle("error", bad);
  };
  const refresh = () => {
    tokens
      .listTokens({})
      .then((r) => {
        list.replaceChildren(...r.tokens.map((t) => row(t, refresh, say)));
        if (r.tokens.length === 0) list.replaceChildren(h("li", { class: "empty" }, "No API token yet."));
      })
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), TOKEN_FIELDS).text, true));
  };
  refresh();

  const name = h("input", { type: "text", name: "name", maxlength: "64", placeholder: "home-assistant", autocomplete: "off" });
  const scope = h("select", { name: "scope" }, SCOPES.map(([v, label]) => h("option", { value: v }, label)));
  const days = h("input", { type: "number", name: "expires_at_ms", min: "1", step: "1", placeholder: "never" });
  const errors = new Map<string, HTMLElement>(TOKEN_FIELDS.map((f) => [f, h("span", { class: "field-error", "data-error": f, role: "alert" })]));
  const formError = h("p", { class: "error", role: "alert" });
  const made = h("div", { class: "made-token", "data-testid": "made-token" });
  const form = h(
    "form",
    { class: "plan-form channel-form token-form", "data-testid": "token-form" },
    h("label", {}, h("span", {}, "Name"), name, errors.get("name")),
    h("label", {}, h("span", {}, "May"), scope, errors.get("scope")),
    h("label", {}, h("span", {}, "Expires after (days, optional)"), days, errors.get("expires_at_ms")),
    formError,
    h("button", { type: "submit" }, "Make token"),
    made,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const el of errors.values()) el.textContent = "";
    formError.textContent = "";
    const ttlDays = days.value.trim() === "" ? undefined : Number(days.value);
    tokens
      .createToken({
        name: name.value.trim(),
        scope: scope.value,
        expiresAtMs: ttlDays === undefined ? undefined : BigInt(Math.round(Date.now() + ttlDays * 86_400_000)),
      })
      .then((r) => {
        const value = h("code", { "data-testid": "token-value" }, r.token);
        const copy = h("button", { type: "button", class: "test" }, "Copy");
        copy.addEventListener("click", () => {
          void navigator.clipboard?.writeText(r.token).then(() => (copy.textContent = "Copied"));
        });
        made.replaceChildren(h("p", { class: "facts" }, `Token ${r.info?.name ?? ""} — copy it now, it is not shown again:`), value, copy);
        name.value = "";
        refresh();
      })
      .catch((err: unknown) => {
        const { field, text } = placeRefusalIn(messageOf(err), TOKEN_FIELDS);
        (field ? errors.get(field) : formError)!.textContent = text;
      });
  });
  return h(
    "section",
    { class: "tokens-section" },
    h("h3", {}, "API tokens"),
    h("p", { class: "facts" }, "For scripts and connectors, sent as a bearer token. Emberline keeps only a hash: a token is shown once, when it is made."),
    list,
    said,
    form,
  );
}
