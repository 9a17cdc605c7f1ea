// Minimal assertions (jsr:@std/assert cannot be reached from here).

export class AssertionError extends Error {}

function show(v: unknown): string {
  if (v instanceof Uint8Array) {
    return `Uint8Array[${Array.from(v.slice(0, 32)).join(",")}${
      v.length > 32 ? ",..." : ""
    }] (${v.length})`;
  }
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

export function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined).sort();
    const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined).sort();
    return equal(ka, kb) &&
      ka.every((k) => equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}

export function assertEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (!equal(actual, expected)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}values differ\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

type ErrorClass = new (...a: never[]) => Error;

/** Checks a caught error's class and message; returns it. */
function expectError(err: unknown, cls?: ErrorClass, msgIncludes?: string): Error {
  if (cls && !(err instanceof cls)) throw new AssertionError(`expected ${cls.name}, got ${err}`);
  if (msgIncludes && !(err as Error).message.includes(msgIncludes)) {
    throw new AssertionError(
      `expected message to include "${msgIncludes}", got "${(err as Error).message}"`,
    );
  }
  return err as Error;
}

export function assertThrows(fn: () => unknown, cls?: ErrorClass, msgIncludes?: string): Error {
  try {
    fn();
  } catch (err) {
    return expectError(err, cls, msgIncludes);
  }
  throw new AssertionError("expected function to throw");
}

export async function assertRejects(
  fn: () => Promise<unknown>,
  cls?: ErrorClass,
  msgIncludes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return expectError(err, cls, msgIncludes);
  }
  throw new AssertionError("expected promise to reject");
}
