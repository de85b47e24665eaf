// A device's cooks: what, when, how long, notes, and each cook's readings as CSV. A cook in
// progress can be shared live: a link anyone can open to watch it, read only.

import { cooks as cookClient, currentCaller, shares } from "../api";
import { h } from "../dom";
import { cookCsv, formatDuration } from "../format";
import type { Cook } from "../gen/emberline/v1/emberline_pb";
import { canShare, type PageMode, pageControls, shareUrl } from "../share";
import { formatTemp, type Unit } from "../units";
import { refusal } from "./signin";

async function download(cook: Cook): Promise<void> {
  const got = await cookClient.getCook({ cookId: cook.cookId });
  const url = URL.createObjectURL(new Blob([cookCsv(got.probes)], { type: "text/csv" }));
  h("a", { href: url, download: `${cook.cookId}.csv` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Links created on this page, by cook: the token is shown once by the server, so the page
 * keeps the address (in memory only) to show it again when the list is redrawn. */
const created = new Map<string, { id: string; url: string }>();

/** Copies `text`; false when the browser would not. */
async function copy(text: string, field: HTMLInputElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (an http origin other than localhost): the selection, the old way.
    field.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
}

/** The "Share live link" control of a cook in progress: creates a link, shows its address
 * with a copy button, and ends it on request. */
function sharePanel(cook: Cook): HTMLElement {
  const host = h("div", { class: "share", "data-share": cook.cookId });
  const said = h("p", { class: "facts", role: "status", "aria-live": "polite" });
  const draw = () => {
    const link = created.get(cook.cookId);
    if (!link) {
      const button = h("button", { type: "button", class: "share-create" }, "Share live link");
      button.addEventListener("click", () => {
        button.disabled = true;
        said.textContent = "";
        shares
          .createShareLink({ cookId: cook.cookId })
          .then((r) => {
            created.set(cook.cookId, { id: r.link?.id ?? "", url: shareUrl(window.location.origin, r.path) });
            draw();
          })
          .catch((e: unknown) => {
            button.disabled = false;
            said.textContent = `Could not share: ${refusal(e)}`;
          });
      });
      host.replaceChildren(button, said);
      return;
    }
    const field = h("input", { type: "text", readonly: true, class: "share-url", value: link.url, "aria-label": "Share link" });
    field.addEventListener("focus", () => field.select());
    const copyButton = h("button", { type: "button", class: "share-copy" }, "Copy");
    copyButton.addEventListener("click", () => {
      void copy(link.url, field).then((ok) => (said.textContent = ok ? "Copied." : "Select the link and copy it."));
    });
    const end = h("button", { type: "button", class: "share-revoke" }, "Stop sharing");
    end.addEventListener("click", () => {
      end.disabled = true;
      shares
        .revokeShareLink({ id: link.id })
        .then(() => {
          created.delete(cook.cookId);
          draw();
          said.textContent = "The link has ended: whoever has it sees nothing more.";
        })
        .catch((e: unknown) => {
          end.disabled = false;
          said.textContent = `Could not stop sharing: ${refusal(e)}`;
        });
    });
    host.replaceChildren(
      h("p", { class: "facts" }, "Anyone with this link can watch the cook live (read only):"),
      h("div", { class: "share-row" }, field, copyButton, end),
      said,
    );
  };
  draw();
  return host;
}

export async function renderCooks(host: HTMLElement, deviceId: string, unit: Unit, mode: PageMode = "signed-in"): Promise<void> {
  const can = pageControls(mode);
  let list: Cook[];
  let sharing = false;
  try {
    [list, sharing] = await Promise.all([
      cookClient.listCooks({ deviceId }).then((r) => r.cooks),
      can.share ? currentCaller().then(canShare) : Promise.resolve(false),
    ]);
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
          sharing && ended === undefined ? sharePanel(c) : null,
        );
      }),
    ),
  );
}
