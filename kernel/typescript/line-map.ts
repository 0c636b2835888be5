/**
 * tslab compiles a cell to JavaScript without a source map, so a runtime error's JS line is mapped
 * back to the cell by matching the tokens of that JS line against the cell's TypeScript lines.
 */
const TOKEN = /[A-Za-z_$][\w$]*|\d+(?:\.\d+)?|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g;
const NOISE = new Set(["exports", "const", "let", "var", "await", "__tslab__"]);

function tokens(line: string): string[] {
  return (line.match(TOKEN) ?? []).filter((t) => !NOISE.has(t));
}

/** The 0-based line of `tsSource` that produced line `jsLine` (0-based) of `jsOutput`, if one matches. */
export function mapJsLine(jsOutput: string, jsLine: number, tsSource: string): number | undefined {
  const target = jsOutput.split("\n")[jsLine];
  if (target === undefined) return undefined;
  const wanted = tokens(target);
  if (wanted.length === 0) return undefined;
  const lines = tsSource.split("\n");
  let best: number | undefined;
  let bestScore = 0;
  lines.forEach((line, index) => {
    const have = tokens(line);
    if (have.length === 0) return;
    const pool = new Map<string, number>();
    for (const t of have) pool.set(t, (pool.get(t) ?? 0) + 1);
    let shared = 0;
    for (const t of wanted) {
      const n = pool.get(t) ?? 0;
      if (n > 0) {
        shared++;
        pool.set(t, n - 1);
      }
    }
    const score = shared / Math.max(wanted.length, have.length);
    const closer = best !== undefined && score === bestScore && Math.abs(index - jsLine) < Math.abs(best - jsLine);
    if (score > bestScore || closer) {
      best = index;
      bestScore = score;
    }
  });
  return bestScore > 0 ? best : undefined;
}

/** The first frame of code compiled from a cell (`evalmachine.<anonymous>:LINE:COL`), 0-based line. */
export function cellFrameLine(error: unknown): number | undefined {
  const stack = error instanceof Error ? error.stack : undefined;
  const match = stack?.match(/evalmachine\.<anonymous>:(\d+)(?::\d+)?/);
  return match ? Number(match[1]) - 1 : undefined;
}
