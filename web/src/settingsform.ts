// What the Settings page's channel form sends, and where the server's refusal belongs: the
// server names the field at fault first ("url: … is not http(s)"), so the form shows the
// rest of the message next to that field.

/** The fields of the channel form. */
export const CHANNEL_FIELDS = ["name", "kind", "url", "secret", "format", "smtp_url", "from", "to", "username", "channel"] as const;
export type ChannelField = (typeof CHANNEL_FIELDS)[number];

/** The field a refusal names and what to say there; `undefined` field: say it for the form. */
export function placeRefusal(message: string): { field: ChannelField | undefined; text: string } {
  return placeRefusalIn(message, CHANNEL_FIELDS);
}

/** The field of `fields` a refusal names and what to say there; `undefined` field: say it
 * for the form. */
export function placeRefusalIn<F extends string>(message: string, fields: readonly F[]): { field: F | undefined; text: string } {
  const clean = message.replace(/^\[\w+\]\s*/, "");
  const m = /^([a-z_]+):\s*(.*)$/s.exec(clean);
  if (m && (fields as readonly string[]).includes(m[1]!)) {
    return { field: m[1] as F, text: m[2]! };
  }
  return { field: undefined, text: clean };
}

/** The recipients of an e-mail channel, from a text field: commas, semicolons or spaces. */
export function recipients(text: string): string[] {
  return text
    .split(/[,;\s]+/)
    .map((a) => a.trim())
    .filter((a) => a !== "");
}
