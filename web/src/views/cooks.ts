// A device's cooks: what, when, how long, notes, and each cook's readings as CSV.

import { cooks as cookClient } from "../api";
import { h } from "../dom";
import { cookCsv, formatDuration } from "../format";
import type { Cook } from "../gen/emberline/v1/emberline_pb";
import { type PageMode, pageControls } from "../share";
import { formatTemp, type Unit } from "../units";

async function download(cook: Cook): Promise<void> {
  const got = await cookClient.getCook({ cookId: cook.cookId });
  const url = URL.createObjectURL(new Blob([cookCsv(got.probes)], { type: "text/csv" }));
  h("a", { href: url, download: `${cook.cookId}.csv` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function renderCooks(host: HTMLElement, deviceId: string, unit: Unit, mode: PageMode = "signed-in"): Promise<void> {
  const can = pageControls(mode);
  let list: Cook[];
  try {
    list = (await cookClient.listCooks({ deviceId })).cooks;
  } catch {
    return; // the live feed already says when the gateway is unreachable
  }
  if (list.length === 0) {
    host.replaceChildren();
    return;
  }
  host.replaceChildren(
    h("h3", {}, mode === "share" ? "Cook" : "Cooks"),
    h(
      "ul",
      { class: "cooks" },
      list.map((c) => {
        const started = Number(c.startedMs);
        const ended = c.endedMs === undefined ? undefined : Number(c.endedMs);
        const targets = Object.entries(c.targetsC).map(([p, t]) => `${p} ${formatTemp(t, unit, 0)}`).join(", ");
        return h(
          "li",
          { "data-cook": c.cookId },
          h("strong", {}, c.what || "Cook"),
          " · ",
          new Date(started).toLocaleString(),
          " · ",
          ended === undefined ? "in progress" : formatDuration(ended - started),
          targets ? h("div", { class: "facts" }, `targets: ${targets}`) : null,
          c.notes.length ? h("div", { class: "facts" }, c.notes.map((n) => n.text).join(" · ")) : null,
          can.export ? h("button", { type: "button", onclick: () => void download(c) }, "CSV") : null,
        );
      }),
    ),
  );
}
