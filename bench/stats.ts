/**
 * Small statistics helpers for benchmark reports.
 *
 * @module
 */

/** The `p`th percentile (0–100) of `values`, by nearest rank. NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** The median; of an even count, the mean of the two middle values (of 2 runs, not the lower one). NaN for an empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? upper) + upper) / 2;
}

/** "median X unit (min A, max B, n runs)". */
export function describeSpread(values: readonly number[], unit: string, digits: number): string {
  const format = (value: number): string => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return `median ${format(median(values))} ${unit} (min ${format(Math.min(...values))}, max ${format(Math.max(...values))}, ${values.length} runs)`;
}
