// The Settings page's thermometer accounts: the configuration file's sources (read-only)
// and the cloud accounts added here, which the server keeps in the log (the password
// sealed) and starts at once. Adding one takes three steps: pick the brand, enter the
// account, see the devices it has ("Find my devices" signs in and stores nothing), then
// save. A stored password is never shown: leaving the field empty keeps it.

import { sources } from "../api";
import { h } from "../dom";
import type { Source, SourceKind } from "../gen/emberline/v1/emberline_pb";
import { placeRefusalIn } from "../settingsform";

type Say = (text: string, bad?: boolean) => void;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function when(ms: bigint): string {
  return ms > 0n ? new Date(Number(ms)).toLocaleTimeString() : "not yet";
}

function row(s: Source, kinds: SourceKind[], refresh: () => void, say: Say): HTMLElement {
  const label = kinds.find((k) => k.kind === s.kind)?.label ?? s.kind;
  const remove = s.fromConfigFile ? null : h("button", { type: "button", class: "remove", "data-testid": `remove-source-${s.name}` }, "Remove");
  remove?.addEventListener("click", () => {
    sources
      .deleteSource({ name: s.name })
      .then(() => {
        say(`Removed ${s.name}.`);
        refresh();
      })
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), []).text, true));
  });
  const health = s.lastError
    ? h("span", { class: "error", "data-status": "error" }, s.lastError)
    : h("span", { class: "facts", "data-status": s.lastSuccessMs > 0n ? "ok" : "waiting" }, `last poll: ${when(s.lastSuccessMs)}`);
  return h(
    "li",
    { class: "channel source", "data-source": s.name },
    h("strong", {}, s.name),
    h("span", { class: "kind" }, label),
    h("span", { class: "target" }, s.fields["username"] ?? ""),
    s.secretSet ? h("span", { class: "secret" }, "password set") : null,
    s.fromConfigFile ? h("span", { class: "readonly" }, "from the config file") : health,
    remove,
  );
}

function accountForm(kinds: SourceKind[], saved: () => void): HTMLFormElement {
  const brand = h("select", { name: "kind", "data-testid": "source-kind" }, kinds.map((k) => h("option", { value: k.kind }, k.label)));
  const name = h("input", { type: "text", name: "name", required: true, placeholder: "back-yard", autocomplete: "off" });
  const nameError = h("span", { class: "field-error", "data-error": "name", role: "alert" });
  const formError = h("p", { class: "error", role: "alert" });
  const found = h("ul", { class: "found", "data-testid": "found-devices" });
  const specific = h("div", { class: "kind-fields" });
  let inputs = new Map<string, { input: HTMLInputElement | HTMLSelectElement; error: HTMLElement }>();
  const showKind = () => {
    const kind = kinds.find((k) => k.kind === brand.value);
    inputs = new Map();
    found.replaceChildren();
    specific.replaceChildren(
      ...(kind?.fields ?? []).map((f) => {
        const input =
          f.type === "choice"
            ? h("select", { name: f.name }, f.choices.map((c) => h("option", { value: c }, c)))
            : h("input", {
                name: f.name,
                type: f.type === "secret" ? "password" : f.type === "number" ? "number" : f.name === "username" ? "email" : "text",
                autocomplete: f.type === "secret" ? "new-password" : "off",
                placeholder: f.type === "secret" ? "leave empty to keep the one set" : f.help,
              });
        const error = h("span", { class: "field-error", "data-error": f.name, role: "alert" });
        inputs.set(f.name, { input, error });
        return h("label", { "data-field": f.name }, h("span", {}, f.label + (f.required ? "" : " (optional)")), input, error);
      }),
    );
  };
  brand.addEventListener("change", showKind);
  showKind();
  const request = () => ({
    name: name.value.trim(),
    kind: brand.value,
    fields: Object.fromEntries([...inputs].map(([n, { input }]) => [n, input.value])),
  });
  const refused = (err: unknown) => {
    const fieldNames = ["name", ...inputs.keys()];
    const { field, text } = placeRefusalIn(messageOf(err), fieldNames);
    const at = field === "name" ? nameError : field ? inputs.get(field)?.error : undefined;
    (at ?? formError).textContent = text;
  };
  const clear = () => {
    for (const { error } of inputs.values()) error.textContent = "";
    nameError.textContent = "";
    formError.textContent = "";
  };
  const find = h("button", { type: "button", class: "test", "data-testid": "find-devices" }, "Find my devices");
  find.addEventListener("click", () => {
    clear();
    found.replaceChildren(h("li", { class: "facts" }, "Signing in…"));
    find.disabled = true;
    sources
      .testSource(request())
      .then((r) => {
        found.replaceChildren(
          ...(r.devices.length === 0
            ? [h("li", { class: "facts" }, "Signed in; the account has no device yet.")]
            : r.devices.map((d) =>
                h("li", { "data-found": d.deviceId }, h("strong", {}, d.name), ` ${Object.values(d.probes).join(", ")}`),
              )),
        );
      })
      .catch((err: unknown) => {
        found.replaceChildren();
        refused(err);
      })
      .finally(() => (find.disabled = false));
  });
  const form = h(
    "form",
    { class: "plan-form source-form", "data-testid": "source-form" },
    h("label", { "data-field": "kind" }, h("span", {}, "Brand"), brand),
    h("label", { "data-field": "name" }, h("span", {}, "Name"), name, nameError),
    specific,
    formError,
    find,
    found,
    h("button", { type: "submit" }, "Save account"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clear();
    sources
      .setSource(request())
      .then(() => {
        const password = inputs.get("password")?.input;
        if (password) password.value = "";
        found.replaceChildren();
        saved();
      })
      .catch(refused);
  });
  return form;
}

/** The accounts section of the Settings page. */
export function accountsSection(): HTMLElement {
  const list = h("ul", { class: "channels", "data-testid": "sources" });
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite", "data-testid": "sources-said" });
  const say: Say = (text, bad = false) => {
    said.textContent = text;
    said.classList.toggle("error", bad);
  };
  const formSlot = h("div", {});
  let kinds: SourceKind[] = [];
  const refresh = () => {
    sources
      .listSources({})
      .then((r) => {
        list.replaceChildren(...r.sources.map((s) => row(s, kinds, refresh, say)));
        if (r.sources.length === 0) list.replaceChildren(h("li", { class: "empty" }, "No thermometer account yet. Add one below."));
      })
      .catch((err: unknown) => say(placeRefusalIn(messageOf(err), []).text, true));
  };
  sources
    .listSourceKinds({})
    .then((r) => {
      kinds = r.kinds;
      formSlot.replaceChildren(
        accountForm(kinds, () => {
          say("Account saved: its devices appear on the dashboard within a poll.");
          refresh();
        }),
      );
      refresh();
    })
    .catch(() => formSlot.replaceChildren());
  return h(
    "section",
    { class: "accounts" },
    h("h3", {}, "Thermometer accounts"),
    h("p", { class: "facts" }, "Cloud accounts Emberline polls. Saved here, they start at once; a stored password is never shown again."),
    list,
    said,
    h("h3", {}, "Add or change an account"),
    formSlot,
  );
}
