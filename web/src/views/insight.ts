// A device's cook intelligence: each probe's predicted done time and phase, the pit's
// phase, and the active alerts (acknowledge from here).

import { alerts as alertClient, predictions as predictionClient } from "../api";
import { h } from "../dom";
import { describePrediction } from "../format";
import { type PageMode, pageControls } from "../share";
import type { Alert, Prediction } from "../gen/emberline/v1/emberline_pb";
import { formatTemp, type Unit } from "../units";
import { refusal } from "./signin";

const PIT_PHASE: Record<string, string> = {
  heating: "coming up to temperature",
  holding: "holding",
  lid_open: "lid open",
  fire_out: "fire dying or out",
};

export async function renderInsight(
  host: HTMLElement,
  deviceId: string,
  unit: Unit,
  label: (probe: string) => string,
  mode: PageMode = "signed-in",
): Promise<void> {
  const can = pageControls(mode);
  let predictions: Prediction[];
  let active: Alert[];
  try {
    [predictions, active] = await Promise.all([
      predictionClient.listPredictions({ deviceId }).then((r) => r.predictions),
      alertClient.listAlerts({ deviceId, activeOnly: true }).then((r) => r.alerts),
    ]);
  } catch {
    return; // the live feed already says when the gateway is unreachable
  }
  const pit = predictions.find((p) => p.pitPhase && p.pitPhase !== "none")?.pitPhase;
  const parts: (Node | null)[] = [
    predictions.length
      ? h(
          "ul",
          { class: "predictions" },
          predictions.map((p) =>
            h(
              "li",
              { "data-probe": p.probeId, "data-stall": String(p.stall) },
              h("strong", {}, `${label(p.probeId)} → ${formatTemp(p.targetC, unit, 0)}`),
              " ",
              describePrediction(p),
            ),
          ),
        )
      : null,
    pit ? h("p", { class: "facts", "data-pit-phase": pit }, `Pit: ${PIT_PHASE[pit] ?? pit}`) : null,
    active.length
      ? h(
          "ul",
          { class: "alerts", role: "alert" },
          active.map((a) =>
            h(
              "li",
              { "data-alert": a.alertId },
              a.message,
              a.acknowledgedMs !== undefined
                ? h("span", { class: "facts" }, " · acknowledged")
                : !can.acknowledge
                  ? null
                  : h(
                      "button",
                      {
                        type: "button",
                        onclick: (e: Event) =>
                          void alertClient
                            .acknowledgeAlert({ alertId: a.alertId })
                            .then(() => renderInsight(host, deviceId, unit, label, mode))
                            .catch((err: unknown) => {
                              // A viewer may look but not acknowledge: say so in the server's words.
                              (e.target as HTMLElement).replaceWith(h("span", { class: "field-error" }, ` ${refusal(err)}`));
                            }),
                      },
                      "Acknowledge",
                    ),
            ),
          ),
        )
      : null,
  ];
  host.replaceChildren(...parts.filter((p): p is Node => p !== null));
}
