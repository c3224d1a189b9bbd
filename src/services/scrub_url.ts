/** A URL fit for logs: a password (with its user name) becomes `*****:*****`, as SocketShark's `_scrub_url`. */
export function scrubUrl(raw: string): string {
  // The user info ends at the last "@" before the path, so a password may itself contain "@".
  const match = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)@/.exec(raw);
  if (!match) return raw;
  const userinfo = match[2];
  if (!userinfo.includes(":")) return raw; // a user name alone is not a secret
  return match[1] + "*****:*****@" + raw.slice(match[0].length);
}
