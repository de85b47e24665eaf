// The plan page: "serve at 18:00, pork shoulder, 4 kg" → when to light, put on, wrap, pull.

import { planner } from "../api";
import { h } from "../dom";
import { planRows, planSummary } from "../plan";
import { fromCelsius, type Unit } from "../units";

const toCelsius = (v: number, unit: Unit) => (unit === "F" ? ((v - 32) * 5) / 9 : v);

/** Tomorrow at 18:00, as a datetime-local value. */
function defaultServe(): string {
  const d = new Date();
  d.setDate(d.getDate() + 1);
  d.setHours(18, 0, 0, 0);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T18:00`;
}

function field(label: string, input: HTMLInputElement | HTMLSelectElement): HTMLLabelElement {
  return h("label", {}, h("span", {}, label), input);
}

export function renderPlan(root: HTMLElement, unit: Unit): void {
  const serve = h("input", { type: "datetime-local", name: "serve", required: true, value: defaultServe() });
  const meat = h("input", { type: "text", name: "meat", required: true, value: "pork shoulder", list: "cuts" });
  const weight = h("input", { type: "number", name: "weight", required: true, min: "0.2", max: "30", step: "0.1", value: "4" });
  const pit = h("input", { type: "number", name: "pit", step: "1", placeholder: "usual for the cut" });
  const target = h("input", { type: "number", name: "target", step: "1", placeholder: "usual for the cut" });
  const rest = h("input", { type: "number", name: "rest", min: "0", max: "360", step: "5", placeholder: "usual for the cut" });
  const wrap = h("input", { type: "checkbox", name: "wrap" });
  const out = h("section", { class: "plan-result", "aria-live": "polite" });
  const optional = (input: HTMLInputElement, temp: boolean) =>
    input.value === "" ? undefined : temp ? toCelsius(Number(input.value), unit) : Number(input.value);
  const form = h(
    "form",
    { class: "plan-form" },
    field("Serve at", serve),
    field("What", meat),
    h("datalist", { id: "cuts" }, ["brisket", "pork shoulder", "chicken", "roast"].map((c) => h("option", { value: c }))),
    field("Weight (kg)", weight),
    field(`Pit (°${unit})`, pit),
    field(`Done at (°${unit})`, target),
    field("Rest (min)", rest),
    h("label", { class: "check" }, wrap, h("span", {}, "Wrap through the stall")),
    h("button", { type: "submit" }, "Plan"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    out.replaceChildren(h("p", { class: "facts" }, "Planning…"));
    planner
      .plan({
        serveAtMs: BigInt(new Date(serve.value).getTime()),
        meat: meat.value,
        weightKg: Number(weight.value),
        pitC: optional(pit, true),
        targetC: optional(target, true),
        restMin: optional(rest, false),
        wrap: wrap.checked,
      })
      .then((p) => {
        out.replaceChildren(
          h("p", { class: "facts" }, `${planSummary(p)} · pit ${fromCelsius(p.pitC, unit).toFixed(0)}° · done at ${fromCelsius(p.targetC, unit).toFixed(0)}°`),
          h(
            "ol",
            { class: "plan-steps" },
            planRows(p).map((r) => h("li", { "data-step": r.key }, h("strong", {}, r.label), h("span", { class: "when" }, r.time), r.range ? h("span", { class: "range" }, r.range) : null)),
          ),
        );
        if (Number(p.putOnAtMs) < Date.now()) {
          out.prepend(h("p", { class: "warning" }, "The meat should already be on for that serving time: serve later, or plan on the short side."));
        }
      })
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message.replace(/^\[\w+\]\s*/, "") : String(err);
        out.replaceChildren(h("p", { class: "error" }, `Cannot plan this: ${message}`));
      });
  });
  root.replaceChildren(h("h2", {}, "Plan a cook"), form, out);
}
