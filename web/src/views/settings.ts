// The Settings page: the tenant's thermometer accounts (see `accounts.ts`), and its
// notification channels — those of the configuration file
// (read-only) and those set up here, which the server keeps in the log and the notifier
// uses at once. A stored secret is never shown: only that one is set, and leaving the
// secret field empty keeps it.

import { devices, settings } from "../api";
import { h } from "../dom";
import type { Device, NotificationChannel } from "../gen/emberline/v1/emberline_pb";
import { placeRefusal, recipients, type ChannelField } from "../settingsform";
import { accountsSection } from "./accounts";
import { rulesSection } from "./rules";
import { tokensSection } from "./tokens";
import { usersSection } from "./users";

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function row(c: NotificationChannel, refresh: () => void, say: (text: string, bad?: boolean) => void): HTMLElement {
  const test = h("button", { type: "button", class: "test", "data-testid": `test-${c.name}` }, "Send a test");
  test.addEventListener("click", () => {
    test.disabled = true;
    say(`Sending a test notification to ${c.name}…`);
    settings
      .testChannel({ name: c.name })
      .then(() => say(`Test notification sent to ${c.name}.`))
      .catch((err: unknown) => say(placeRefusal(messageOf(err)).text, true))
      .finally(() => (test.disabled = false));
  });
  const remove = c.fromConfigFile
    ? null
    : h("button", { type: "button", class: "remove", "data-testid": `remove-${c.name}` }, "Remove");
  remove?.addEventListener("click", () => {
    settings
      .deleteChannel({ name: c.name })
      .then(() => {
        say(`Removed ${c.name}.`);
        refresh();
      })
      .catch((err: unknown) => say(placeRefusal(messageOf(err)).text, true));
  });
  return h(
    "li",
    { class: "channel", "data-channel": c.name },
    h("strong", {}, c.name),
    h("span", { class: "kind" }, c.kind + (c.format && c.format !== "json" ? ` (${c.format})` : "")),
    h("span", { class: "target" }, c.target),
    c.secretSet ? h("span", { class: "secret" }, "secret set") : null,
    c.fromConfigFile ? h("span", { class: "readonly" }, "from the config file") : null,
    test,
    remove,
  );
}

function channelForm(saved: () => void): HTMLFormElement {
  const errors = new Map<ChannelField | "form", HTMLElement>();
  const field = (name: ChannelField, label: string, input: HTMLInputElement | HTMLSelectElement) => {
    const error = h("span", { class: "field-error", "data-error": name, role: "alert" });
    errors.set(name, error);
    input.setAttribute("name", name);
    return h("label", { "data-field": name }, h("span", {}, label), input, error);
  };
  const kind = h("select", {}, ["webhook", "ntfy", "email", "sms"].map((k) => h("option", { value: k }, k)));
  const name = h("input", { type: "text", required: true, placeholder: "phone", autocomplete: "off" });
  const url = h("input", { type: "url", placeholder: "https://hooks.slack.com/services/…", autocomplete: "off" });
  const format = h("select", {}, ["json", "slack", "discord"].map((f) => h("option", { value: f }, f)));
  const secret = h("input", { type: "password", placeholder: "leave empty to keep the one set", autocomplete: "new-password" });
  const smtpUrl = h("input", { type: "text", placeholder: "smtps://mail.example.org:465" });
  const from = h("input", { type: "email", placeholder: "grill@example.org" });
  const fromNumber = h("input", { type: "tel", placeholder: "+15005550006" });
  const to = h("input", { type: "text", placeholder: "me@example.org, you@example.org" });
  const username = h("input", { type: "text", autocomplete: "off" });
  const formError = h("p", { class: "error", role: "alert" });
  errors.set("form", formError);
  // Built on each change of kind: an input sits in one label at a time.
  const byKind = {
    webhook: () => [field("url", "URL", url), field("format", "Format", format), field("secret", "Signing secret", secret)],
    ntfy: () => [field("url", "Topic URL", url), field("secret", "Access token", secret)],
    sms: () => [
      field("username", "Account SID", username),
      field("secret", "Auth token", secret),
      field("from", "From (number)", fromNumber),
      field("to", "To (number)", to),
      field("url", "API (Twilio-compatible)", url),
    ],
    email: () => [
      field("smtp_url", "SMTP server", smtpUrl),
      field("from", "From", from),
      field("to", "To", to),
      field("username", "Login", username),
      field("secret", "Password", secret),
    ],
  };
  const specific = h("div", { class: "kind-fields" });
  const showKind = () => specific.replaceChildren(...byKind[kind.value as keyof typeof byKind]());
  kind.addEventListener("change", showKind);
  showKind();
  const form = h(
    "form",
    { class: "plan-form channel-form", "data-testid": "channel-form" },
    field("name", "Name", name),
    field("kind", "Kind", kind),
    specific,
    formError,
    h("button", { type: "submit" }, "Save channel"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const el of errors.values()) el.textContent = "";
    settings
      .setChannel({
        channel: { name: name.value.trim(), kind: kind.value, format: format.value, devices: [] },
        url: url.value.trim(),
        secret: secret.value,
        smtpUrl: smtpUrl.value.trim(),
        from: (kind.value === "sms" ? fromNumber : from).value.trim(),
        to: recipients(to.value),
        username: username.value.trim(),
      })
      .then(() => {
        secret.value = "";
        saved();
      })
      .catch((err: unknown) => {
        const { field: at, text } = placeRefusal(messageOf(err));
        (errors.get(at ?? "form") ?? formError).textContent = text;
      });
  });
  return form;
}

/** One device's names: the device's and each probe's; an emptied field gives back the
 * name its source reports. */
function namesForm(d: Device, say: (text: string, bad?: boolean) => void): HTMLFormElement {
  const name = h("input", { type: "text", name: "name", value: d.name, maxlength: "64", autocomplete: "off" });
  const labels = d.probeIds.map((p) => ({
    probe: p,
    input: h("input", { type: "text", name: `probe-${p}`, value: d.probeLabels[p] ?? p, maxlength: "64", autocomplete: "off" }),
  }));
  const error = h("span", { class: "field-error", role: "alert" });
  const form = h(
    "form",
    { class: "plan-form names-form", "data-names": d.deviceId },
    h("label", {}, h("span", {}, `Device ${d.deviceId}`), name),
    labels.map(({ probe, input }) => h("label", {}, h("span", {}, `Probe ${probe}`), input)),
    error,
    h("button", { type: "submit" }, "Save names"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    error.textContent = "";
    settings
      .renameDevice({
        deviceId: d.deviceId,
        name: name.value.trim() === d.deviceId ? "" : name.value,
        // A label left as the probe's id is no label.
        probeLabels: Object.fromEntries(labels.map(({ probe, input }) => [probe, input.value.trim() === probe ? "" : input.value])),
      })
      .then(() => say(`Names of ${d.deviceId} saved.`))
      .catch((err: unknown) => (error.textContent = placeRefusal(messageOf(err)).text));
  });
  return form;
}

/** The Settings page; `me` is the signed-in user's name. */
export function renderSettings(root: HTMLElement, me?: string): void {
  const list = h("ul", { class: "channels", "data-testid": "channels" });
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite" });
  const say = (text: string, bad = false) => {
    said.textContent = text;
    said.classList.toggle("error", bad);
  };
  const refresh = () => {
    settings
      .listChannels({})
      .then((r) => {
        list.replaceChildren(...r.channels.map((c) => row(c, refresh, say)));
        if (r.channels.length === 0) list.replaceChildren(h("li", { class: "empty" }, "No channel yet: alerts go nowhere. Add one below."));
      })
      .catch((err: unknown) => {
        const text = messageOf(err);
        say(/permission_denied/i.test(text) ? "Only an owner sees and changes the settings." : placeRefusal(text).text, true);
      });
  };
  refresh();
  const names = h("div", { class: "names", "data-testid": "names" });
  const rules = h("div", { "data-testid": "rules-section" });
  Promise.all([devices.listDevices({}), settings.listChannels({}).catch(() => ({ channels: [] }))])
    .then(([r, c]) => {
      names.replaceChildren(...r.devices.map((d) => namesForm(d, say)));
      rules.replaceChildren(rulesSection(r.devices, c.channels.map((ch) => ch.name)));
    })
    .catch(() => names.replaceChildren());
  root.replaceChildren(
    h("h2", {}, "Settings"),
    accountsSection(),
    rules,
    h("h3", {}, "Notification channels"),
    h("p", { class: "facts" }, "Where alerts go. Channels saved here work at once, on every server; a stored secret is never shown again."),
    list,
    said,
    h("h3", {}, "Add or change a channel"),
    channelForm(() => {
      say("Saved.");
      refresh();
    }),
    usersSection(me),
    tokensSection(),
    h("h3", {}, "Devices and probes"),
    h("p", { class: "facts" }, "Names shown here, on the dashboard and in Home Assistant (whose entity ids stay). Empty a field for the name the thermometer reports."),
    names,
  );
}
