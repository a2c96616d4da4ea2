/**
 * Small text helpers shared by the layers that put strings on the wire or into the log.
 *
 * @module
 */

/**
 * A lone UTF-16 surrogate. It does not survive UTF-8 encoding: two different strings containing one
 * would arrive as the same string.
 */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

/**
 * `text` with lone surrogates replaced by U+FFFD, cut to at most `maxChars` UTF-16 units at a whole
 * character (never between the halves of a surrogate pair).
 */
export function wellFormedPrefix(text: string, maxChars: number): string {
  return text.replace(LONE_SURROGATES, '\uFFFD').slice(0, maxChars).replace(/[\uD800-\uDBFF]$/, '');
}

/** 32-bit FNV-1a hash of a string's UTF-16 code units: a cheap, deterministic spread of a name. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let position = 0; position < text.length; position++) {
    hash ^= text.charCodeAt(position);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
