// Typed clients of the gateway over grpc-web on the page's own origin. A page opened on a
// share link (`/s/<token>`) calls with the link's token instead of the session cookies.

import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { Renewer, renewingInterceptor } from "./session";
import { shareInterceptor, shareTokenOf } from "./share";
import {
  AlertService,
  AuthService,
  CookService,
  PredictionService,
  DeviceService,
  PlannerService,
  ReadingService,
  SettingsService,
  ShareService,
  SourceService,
  TokenService,
  UserService,
  StartFrom,
  TrendService,
  type AlertEvent,
  type DeviceUpdate,
  type PredictionEvent,
  type TrendEvent,
  type WhoAmIResponse,
} from "./gen/emberline/v1/emberline_pb";

/** Says "signed-out" when the session is over (a renewal was refused): the page then shows
 * the sign-in form. Credentials live in HttpOnly cookies the page never sees. */
export const sessionEvents = new EventTarget();
const signedOut = () => sessionEvents.dispatchEvent(new Event("signed-out"));

/** AuthService calls that need no session; their refusals are answers (a wrong password),
 * not expired credentials. WhoAmI is not among them: it renews like any other call. */
const SESSIONLESS = new Set(["Setup", "SignIn", "Refresh", "SignOut"]);

/** One renewal at a time across the page's tabs too: each would present the same refresh
 * cookie, and the server takes a reused one for a stolen one. */
async function oneTabAtATime(renew: () => Promise<void>): Promise<void> {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  if (!locks) return renew();
  await locks.request("emberline-session-renewal", renew);
}

const renewer = new Renewer(
  () =>
    oneTabAtATime(async () => {
      await auth.refresh({ cookie: true });
    }),
  signedOut,
);

/** The share link's token when the page was opened on one (then nothing here renews a
 * session: the page has none); undefined on a signed-in page. Kept in memory only. */
export const shareToken: string | undefined = shareTokenOf(window.location.pathname);

/** Says "share-ended" when a share link's page is refused: the link was revoked or expired. */
export const shareEvents = new EventTarget();

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors:
    shareToken !== undefined
      ? [shareInterceptor(shareToken, () => shareEvents.dispatchEvent(new Event("share-ended")))]
      : [
          renewingInterceptor(renewer, (req) => req.service.typeName === AuthService.typeName && SESSIONLESS.has(req.method.name), signedOut),
        ],
});

export const auth = createClient(AuthService, transport);

/** Ends the session: no renewal may race it (its answer could bring the cookies back). */
export async function signOut(): Promise<void> {
  callerAsked = undefined;
  await renewer.hold();
  await auth.signOut({});
}

/** Signed in anew: expired credentials are renewed again. */
export function sessionStarted(): void {
  callerAsked = undefined;
  renewer.release();
}

let callerAsked: Promise<WhoAmIResponse | undefined> | undefined;
sessionEvents.addEventListener("signed-out", () => (callerAsked = undefined));

/** Who the page calls as, asked once per session (what a view offers depends on the role;
 * the server checks every call all the same). Undefined when the server did not say. */
export function currentCaller(): Promise<WhoAmIResponse | undefined> {
  callerAsked ??= auth.whoAmI({}).catch(() => {
    callerAsked = undefined; // ask again next time
    return undefined;
  });
  return callerAsked;
}

export const devices = createClient(DeviceService, transport);
export const readings = createClient(ReadingService, transport);
export const cooks = createClient(CookService, transport);
export const predictions = createClient(PredictionService, transport);
export const alerts = createClient(AlertService, transport);
export const planner = createClient(PlannerService, transport);
export const shares = createClient(ShareService, transport);
export const settings = createClient(SettingsService, transport);
export const sources = createClient(SourceService, transport);
export const tokens = createClient(TokenService, transport);
export const users = createClient(UserService, transport);
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

/** Opens a subscription to the devices' descriptions (all devices, or one): a snapshot,
 * then each change. It has no resume position: reopened, it starts with a new snapshot. */
export function subscribeDevices(
  deviceId: string,
  signal: AbortSignal,
  opened: (headers?: Headers) => void,
): AsyncIterable<DeviceUpdate> {
  return devices.subscribeDevices({ deviceId }, { signal, onHeader: opened });
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
