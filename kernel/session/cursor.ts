/**
 * Jupyter counts cursor positions in Unicode code points (protocol 5.2); JavaScript strings index
 * UTF-16 code units. These convert between the two.
 */
export function codePointToIndex(text: string, codePoints: number): number {
  let index = 0;
  for (let seen = 0; seen < codePoints && index < text.length; seen++) {
    index += (text.codePointAt(index) ?? 0) > 0xffff ? 2 : 1;
  }
  return index;
}

export function indexToCodePoint(text: string, index: number): number {
  return [...text.slice(0, index)].length;
}

/** Character offset at which 0-based `line` starts in `text`. */
export function lineOffset(text: string, line: number): number {
  let offset = 0;
  for (let i = 0; i < line; i++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return offset;
}
