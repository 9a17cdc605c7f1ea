/**
 * Runs `work` over `items` with at most `concurrency` at once. A failure
 * (of a work, or of reading `items`) stops it taking more items; the work
 * already running is waited for, then the failure is thrown: the first
 * one, or an AggregateError of all when several failed. Rejecting at the
 * first let a tool report and exit while other works still wrote.
 */
export async function pool<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const running = new Set<Promise<void>>();
  const failures: unknown[] = [];
  try {
    for await (const item of items) {
      const p: Promise<void> = work(item)
        .catch((err) => void failures.push(err))
        .finally(() => running.delete(p));
      running.add(p);
      if (running.size >= concurrency) await Promise.race(running);
      if (failures.length > 0) break;
    }
  } catch (err) {
    failures.push(err);
  }
  await Promise.all(running);
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) {
    const messages = failures.map((err) => err instanceof Error ? err.message : String(err));
    throw new AggregateError(failures, `${failures.length} failures: ${messages.join("; ")}`);
  }
}
