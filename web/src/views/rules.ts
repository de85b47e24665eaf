// The Settings page's alert rules: every device's rules in words ("Pit goes above 275°F for
// 1 min"), a form to add one — device, probe, what to watch, the threshold in the user's
// unit — and a Remove button each. The server checks a rule and names the field at fault,
// which the form shows next to that field.

import { alerts } from "../api";
import { h } from "../dom";
import type { Device } from "../gen/emberline/v1/emberline_pb";
import { describeRule, RULE_KINDS, ruleKind, thresholdToServer } from "../rules";
import { placeRefusalIn } from "../settingsform";
import { loadUnit, type Unit } from "../units";

type Say = (text: string, bad?: boolean) => void;

const RULE_FIELDS = ["device_id", "probe_id", "kind", "threshold", "for_s", "repeat_every_s", "label", "notify"] as const;
type RuleField = (typeof RULE_FIELDS)[number];

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function probeName(d: Device | undefined, probe: string): string {
  return d?.probeLabels[probe] || probe;
}

/** Rules are projected from the log a moment after they are set or removed: how long the
 * page looks again for the change. */
const PROJECTED_WITHIN_MS = 10_000;

function ruleList(devices: Device[], unit: Unit, say: Say): { list: HTMLElement; refreshUntil: (done: (ids: Set<string>) => boolean) => void } {
  const list = h("ul", { class: "channels rules", "data-testid": "rules" });
  // The rule ids listed; rejects when the rules cannot be read (said on the page).
  const refresh = (): Promise<Set<string>> =>
    Promise.all(devices.map((d) => alerts.listAlertRules({ deviceId: d.deviceId }).then((r) => ({ d, rules: r.rules }))))
      .then((all) => {
        const rows = all.flatMap(({ d, rules }) =>
          rules.map((rule) => {
            const remove = h("button", { type: "button", class: "remove", "data-testid": `remove-rule-${rule.ruleId}` }, "Remove");
            remove.addEventListener("click", () => {
              alerts
                .deleteAlertRule({ deviceId: d.deviceId, ruleId: rule.ruleId })
                .then(() => {
                  say("Rule removed.");
                  refreshUntil((ids) => !ids.has(rule.ruleId));
                })
                .catch((err: unknown) => say(placeRefusalIn(messageOf(err), RULE_FIELDS).text, true));
            });
            return h(
              "li",
              { class: "channel rule", "data-rule": rule.ruleId, "data-rule-device": d.deviceId },
              h("strong", {}, d.name || d.deviceId),
              h("span", { class: "target" }, describeRule(rule, unit, (p) => probeName(d, p))),
              remove,
            );
          }),
        );
        list.replaceChildren(...(rows.length ? rows : [h("li", { class: "empty" }, "No alert rule yet. Add one below.")]));
        return new Set(all.flatMap(({ rules }) => rules.map((r) => r.ruleId)));
      });
  const refreshUntil = (done: (ids: Set<string>) => boolean) => {
    const until = Date.now() + PROJECTED_WITHIN_MS;
    const again = () =>
      refresh()
        .then((ids) => {
          if (!done(ids) && Date.now() < until) setTimeout(again, 250);
        })
        .catch((err: unknown) => say(placeRefusalIn(messageOf(err), RULE_FIELDS).text, true));
    again();
  };
  return { list, refreshUntil };
}

function ruleForm(devices: Device[], channels: string[], unit: Unit, saved: (ruleId: string) => void): HTMLFormElement {
  const errors = new Map<RuleField | "form", HTMLElement>();
  const field = (name: RuleField, label: string, input: HTMLElement) => {
    const error = h("span", { class: "field-error", "data-error": name, role: "alert" });
    errors.set(name, error);
    input.setAttribute("name", name);
    return h("label", { "data-field": name }, h("span", {}, label), input, error);
  };
  const device = h("select", {}, devices.map((d) => h("option", { value: d.deviceId }, d.name || d.deviceId)));
  const probe = h("select", {});
  const kind = h("select", {}, RULE_KINDS.map((k) => h("option", { value: k.kind }, k.label)));
  const threshold = h("input", { type: "number", step: "any", inputmode: "decimal" });
  const forMin = h("input", { type: "number", step: "any", min: "0", placeholder: "0" });
  const repeatMin = h("input", { type: "number", step: "any", min: "0.5", placeholder: "never" });
  const label = h("input", { type: "text", maxlength: "64", placeholder: "Pit too hot", autocomplete: "off" });
  const sendTo = h("select", {}, h("option", { value: "" }, "every channel"), channels.map((c) => h("option", { value: c }, c)));
  const escalateTo = h("select", { name: "escalate_to" }, h("option", { value: "" }, "nobody"), channels.map((c) => h("option", { value: c }, c)));
  const formError = h("p", { class: "error", role: "alert" });
  errors.set("form", formError);
  const thresholdLabel = h("span", {});
  const showDevice = () => {
    const d = devices.find((x) => x.deviceId === device.value);
    probe.replaceChildren(...(d?.probeIds ?? []).map((p) => h("option", { value: p }, probeName(d, p))));
  };
  const showKind = () => {
    const k = ruleKind(kind.value);
    probe.disabled = !k?.probe;
    threshold.disabled = k?.measure === "none";
    const unitText = { temp: `°${unit}`, rate: `°${unit}/min`, seconds: "s", minutes: "min", percent: "%", none: "" }[k?.measure ?? "none"];
    thresholdLabel.textContent = k?.measure === "none" ? "Threshold (none)" : `Threshold (${unitText})${k?.optional ? ", empty: the probe's target" : ""}`;
  };
  device.addEventListener("change", showDevice);
  kind.addEventListener("change", showKind);
  showDevice();
  showKind();
  const thresholdField = field("threshold", "", threshold);
  thresholdField.firstElementChild?.replaceWith(thresholdLabel);
  const form = h(
    "form",
    { class: "plan-form rule-form", "data-testid": "rule-form" },
    field("device_id", "Device", device),
    field("probe_id", "Probe", probe),
    field("kind", "When it", kind),
    thresholdField,
    field("for_s", "For at least (min)", forMin),
    field("notify", "Send to", sendTo),
    h("label", { "data-field": "escalate_to" }, h("span", {}, "If not acknowledged, escalate to"), escalateTo),
    field("repeat_every_s", "Repeat (or escalate) until acknowledged, every (min)", repeatMin),
    field("label", "Label (optional)", label),
    formError,
    h("button", { type: "submit" }, "Add rule"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const el of errors.values()) el.textContent = "";
    const k = ruleKind(kind.value);
    const typed = threshold.value.trim();
    const minutes = (text: string) => (text.trim() === "" ? undefined : Number(text) * 60);
    if (escalateTo.value && !sendTo.value) {
      errors.get("notify")!.textContent = "pick the channel the first alert goes to";
      return;
    }
    alerts
      .setAlertRule({
        rule: {
          deviceId: device.value,
          probeId: k?.probe ? probe.value : undefined,
          kind: kind.value,
          threshold: typed === "" || !k ? undefined : thresholdToServer(k.measure, Number(typed), unit),
          forS: minutes(forMin.value) ?? 0,
          repeatEveryS: minutes(repeatMin.value),
          label: label.value.trim() || undefined,
          notify: [sendTo.value, escalateTo.value].filter((c) => c !== ""),
        },
      })
      .then((r) => {
        threshold.value = "";
        label.value = "";
        saved(r.ruleId);
      })
      .catch((err: unknown) => {
        const { field: at, text } = placeRefusalIn(messageOf(err), RULE_FIELDS);
        (errors.get(at ?? "form") ?? formError).textContent = text;
      });
  });
  return form;
}

/** The alert rules section of the Settings page, for `devices`, routing to `channels`. */
export function rulesSection(devices: Device[], channels: string[]): HTMLElement {
  const unit = loadUnit(globalThis.localStorage);
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite", "data-testid": "rules-said" });
  const say: Say = (text, bad = false) => {
    said.textContent = text;
    said.classList.toggle("error", bad);
  };
  const { list, refreshUntil } = ruleList(devices, unit, say);
  refreshUntil(() => true);
  return h(
    "section",
    { class: "rules-section" },
    h("h3", {}, "Alert rules"),
    h("p", { class: "facts" }, "When to be told. An alert goes to every notification channel below, and shows on the device page until acknowledged."),
    list,
    said,
    devices.length
      ? ruleForm(devices, channels, unit, (ruleId) => {
          say("Rule added.");
          refreshUntil((ids) => ids.has(ruleId));
        })
      : h("p", { class: "facts" }, "No device yet: rules are added per device."),
  );
}
