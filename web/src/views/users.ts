// The Settings page's users: who may sign in to this household's Emberline and with what
// role — owners change settings, cooks run cooks and alerts, viewers watch — a form to add
// one with a first password, and Remove (their sessions end; the last owner stays).

import { users } from "../api";
import { h } from "../dom";
import type { UserInfo } from "../gen/emberline/v1/emberline_pb";
import { placeRefusalIn } from "../settingsform";

type Say = (text: string, bad?: boolean) => void;

const USER_FIELDS = ["name", "role", "password"] as const;

const ROLES: readonly [string, string][] = [
  ["viewer", "viewer: watches"],
  ["cook", "cook: also runs cooks, targets and alerts"],
  ["owner", "owner: also settings, users and tokens"],
];

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function row(u: UserInfo, me: string | undefined, refresh: () => void, say: Say): HTMLElement {
  const remove =
    u.name === me ? null : h("button", { type: "button", class: "remove", "data-testid": `remove-user-${u.name}` }, "Remove");
  remove?.addEventListener("click", () => {
    users
      .removeUser({ name: u.name })
      .then(() => {
        say(`Removed ${u.name}; their sessions are ended.`);
        refresh();
      })
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), USER_FIELDS).text, true));
  });
  return h(
    "li",
    { class: "channel user", "data-user": u.name },
    h("strong", {}, u.name),
    h("span", { class: "kind" }, u.role),
    u.name === me ? h("span", { class: "readonly" }, "you") : null,
    remove,
  );
}

/** The users section of the Settings page; `me` is the signed-in user (not removable here). */
export function usersSection(me: string | undefined): HTMLElement {
  const list = h("ul", { class: "channels", "data-testid": "users" });
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite" });
  const say: Say = (text, bad = false) => {
    said.textContent = text;
    said.classList.toggle("error", bad);
  };
  const refresh = () => {
    users
      .listUsers({})
      .then((r) => list.replaceChildren(...r.users.map((u) => row(u, me, refresh, say))))
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), USER_FIELDS).text, true));
  };
  refresh();
  const name = h("input", { type: "text", name: "name", maxlength: "64", autocomplete: "off", placeholder: "sam" });
  const role = h("select", { name: "role" }, ROLES.map(([v, label]) => h("option", { value: v }, label)));
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", placeholder: "at least 8 characters" });
  const errors = new Map<string, HTMLElement>(USER_FIELDS.map((f) => [f, h("span", { class: "field-error", "data-error": f, role: "alert" })]));
  const formError = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "plan-form channel-form user-form", "data-testid": "user-form" },
    h("label", {}, h("span", {}, "Name"), name, errors.get("name")),
    h("label", {}, h("span", {}, "Role"), role, errors.get("role")),
    h("label", {}, h("span", {}, "First password (they can be given a new one with `emberline user passwd`)"), password, errors.get("password")),
    formError,
    h("button", { type: "submit" }, "Add user"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const el of errors.values()) el.textContent = "";
    formError.textContent = "";
    users
      .addUser({ name: name.value.trim(), role: role.value, password: password.value })
      .then(() => {
        say(`Added ${name.value.trim()}.`);
        name.value = "";
        password.value = "";
        refresh();
      })
      .catch((err: unknown) => {
        const { field, text } = placeRefusalIn(messageOf(err), USER_FIELDS);
        (field ? errors.get(field) : formError)!.textContent = text;
      });
  });
  return h(
    "section",
    { class: "users-section" },
    h("h3", {}, "Users"),
    h("p", { class: "facts" }, "Who may sign in, and what they may do."),
    list,
    said,
    form,
  );
}
