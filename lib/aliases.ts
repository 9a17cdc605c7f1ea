// Two names for one nginx ("localhost:3001" and "127.0.0.1:3001") look like
// two volumes to the tools, and that loses data: rebalance copies a value
// "to" the new name (onto the file itself), then deletes the "old" copy,
// which is the same file; verify -repair deletes live files as orphans of
// the other name. A marker file written through each name, and looked for
// through the others, tells them apart.
import {
  headStatus,
  remoteDelete,
  remotePut,
  unanswered,
  VolumeError,
  volumeUrl,
} from "./volumes.ts";
import { volumeOfReplica } from "./keys.ts";

const MARKER = "mkv-volume-name.";

/**
 * Whether a file at a volume's root is a marker of this check (`verify`
 * removes those left): `mkv-volume-name.<uuid>.<n>`, or without `.<n>` as
 * an older version wrote them.
 */
export function isMarker(name: string): boolean {
  return name.startsWith(MARKER) && /^[0-9a-f-]{36}(\.\d+)?$/.test(name.slice(MARKER.length));
}

/**
 * Names that reach the same nginx as another, as "a and b": among `given`
 * (-volumes) and `recorded` (volumes the index names, "host:port[/svNN]").
 * Only volumes that answer are compared: one that does not is no file's
 * second name.
 */
export async function aliasesOf(
  given: readonly string[],
  recorded: Iterable<string>,
  timeout: number,
): Promise<string[]> {
  return (await checkNames(given, recorded, timeout)).aliases;
}

/**
 * Statuses a server that is no WebDAV volume answers a PUT with (nginx
 * without volume.conf's dav_methods: 405; another HTTP service: 501 or
 * 405). A volume that is full (507), or whose folder nginx cannot write
 * (403, 500), is a volume in trouble, not another service.
 */
const NO_DAV = new Set([405, 501]);

/**
 * The header of the marker's PUT, and the status an mkv master answers a
 * request carrying it with (lib/server.ts): a master named in -volumes
 * took the marker for a key, and would take every replica for one.
 */
export const NAME_CHECK = "Mkv-Name-Check";
export const MASTER_ANSWER = 508;

/**
 * aliasesOf's check, which also tells the volumes among `given` that
 * refused the marker's PUT as a server that takes no PUT does (`notVolumes`:
 * "host:port (status N)"), and those that are mkv masters (`masters`).
 */
export async function checkNames(
  given: readonly string[],
  recorded: Iterable<string>,
  timeout: number,
): Promise<{ aliases: string[]; notVolumes: string[]; masters: string[] }> {
  const notVolumes: string[] = [];
  const masters: string[] = [];
  const others = new Set([...recorded].map(volumeOfReplica));
  for (const v of given) others.delete(v);
  // At the root, where the walks look for no key (verify removes one left),
  // one per name: an empty file, which a volume whose disk is full still
  // takes (a marker holding the name it was written through was refused
  // 507 there, and that volume was compared with none).
  const base = `/${MARKER}${crypto.randomUUID()}`;
  const pathOf = new Map(given.map((v, i) => [v, `${base}.${i}`]));
  // Each PUT bounded on its own (stall: the whole call): a volume that
  // does not answer must not use up the time of the PUTs after it.
  const opts = {
    signal: new AbortController().signal,
    stall: timeout,
    headers: { [NAME_CHECK]: "1" },
  };
  const marked: string[] = [];
  /** Volumes whose marker's PUT went unanswered: it may land yet. */
  const landing: string[] = [];
  try {
    for (const v of given) {
      try {
        await remotePut(volumeUrl(v, pathOf.get(v)!), new Uint8Array(0), opts);
        marked.push(v);
      } catch (err) {
        // Down: compared with nothing.
        if (unanswered(err)) landing.push(v);
        if (err instanceof VolumeError && NO_DAV.has(err.status)) {
          notVolumes.push(`${v} (status ${err.status})`);
        }
        if (err instanceof VolumeError && err.status === MASTER_ANSWER) masters.push(v);
      }
    }
    const lastSeen = await Promise.all(
      [...marked, ...others].map((v) => lastMarkerOn(v, { marked, pathOf, timeout })),
    );
    const aliases = [...marked, ...others].flatMap((v, i) => {
      const seen = lastSeen[i];
      return seen !== null && seen !== v ? [`${seen} and ${v}`] : [];
    });
    return { aliases, notVolumes, masters };
  } finally {
    // Removed where it landed, or may have: at the root, where no walk of
    // the tools looks, a marker left stays for good.
    await Promise.all(
      [...marked, ...landing].map((v) =>
        remoteDelete(volumeUrl(v, pathOf.get(v)!), timeout).catch(() => {})
      ),
    );
  }
}

/**
 * The last of `marked` (in their order) whose marker `volume` holds: the
 * name `volume` shares its nginx with, or its own name when it shares none
 * (or is marked last of those that share it); null when it holds none (or
 * did not answer: none to compare).
 */
async function lastMarkerOn(
  volume: string,
  of: { marked: string[]; pathOf: Map<string, string>; timeout: number },
): Promise<string | null> {
  const { marked, pathOf, timeout } = of;
  const statuses = await Promise.all(
    marked.map((w) => headStatus(volumeUrl(volume, pathOf.get(w)!), timeout)),
  );
  const held = marked.filter((_, i) => statuses[i] === 200);
  return held.at(-1) ?? null;
}

/** Why these aliases are refused: `harm` is what they would do. */
/** Why `masters` (from checkNames) cannot be volumes. */
export function mastersMessage(masters: string[]): string {
  return `An mkv master answers at ${masters.join(", ")}, not a volume: -volumes names nginx ` +
    `volumes (deno task volume DIR); check -volumes`;
}

/**
 * What is wrong with -volumes by checkNames' finding, said as
 * aliasesMessage (with `harm`) or mastersMessage; null when nothing is.
 */
export function namesProblem(
  names: { aliases: string[]; masters: string[] },
  harm?: string,
): string | null {
  if (names.aliases.length > 0) return aliasesMessage(names.aliases, harm);
  if (names.masters.length > 0) return mastersMessage(names.masters);
  return null;
}

export function aliasesMessage(
  aliases: string[],
  harm = "as the index does, or a copy would be deleted as its own duplicate",
): string {
  return `Two names reach the same volume (${
    aliases.join(", ")
  }): name each volume one way, ${harm}`;
}
