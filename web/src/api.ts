// Typed clients of the gateway over grpc-web on the page's own origin.

import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  AlertService,
  CookService,
  PredictionService,
  DeviceService,
  PlannerService,
  ReadingService,
  StartFrom,
  TrendService,
  type AlertEvent,
  type PredictionEvent,
  type TrendEvent,
} from "./gen/emberline/v1/emberline_pb";

const transport = createGrpcWebTransport({ baseUrl: window.location.origin });

export const devices = createClient(DeviceService, transport);
export const readings = createClient(ReadingService, transport);
export const cooks = createClient(CookService, transport);
export const predictions = createClient(PredictionService, transport);
export const alerts = createClient(AlertService, transport);
export const planner = createClient(PlannerService, transport);
const trends = createClient(TrendService, transport);

/** Opens a trend subscription (all devices, or one) from `resume`. */
export function subscribeTrends(
  deviceId: string,
  resume: { [partition: number]: bigint },
  signal: AbortSignal,
  opened: (headers?: Headers) => void,
): AsyncIterable<TrendEvent> {
  return trends.subscribeTrends(
    { deviceId, resume, start: StartFrom.LATEST },
    { signal, onHeader: opened },
  );
}

/** Opens a subscription to one device's prediction updates from `resume` (empty: from now). */
export function subscribePredictions(
  deviceId: string,
  resume: { [partition: number]: bigint },
  signal: AbortSignal,
  opened: (headers?: Headers) => void,
): AsyncIterable<PredictionEvent> {
  return predictions.subscribePredictions({ deviceId, resume, start: StartFrom.LATEST }, { signal, onHeader: opened });
}

/** Opens a subscription to one device's alerts raised and cleared from `resume`. */
export function subscribeAlerts(
  deviceId: string,
  resume: { [partition: number]: bigint },
  signal: AbortSignal,
  opened: (headers?: Headers) => void,
): AsyncIterable<AlertEvent> {
  return alerts.subscribeAlerts({ deviceId, resume, start: StartFrom.LATEST }, { signal, onHeader: opened });
}
