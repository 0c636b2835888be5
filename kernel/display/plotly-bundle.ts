import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { CACHE_DIR } from "../paths.js";

const require = createRequire(import.meta.url);

/** The plotly.js bundle that ships with the package (plotly.js-dist). */
export function plotlySource(): { path: string; version: string } {
  const path = require.resolve("plotly.js-dist");
  const { version } = require("plotly.js-dist/package.json") as { version: string };
  return { path, version };
}

let payload: string | undefined;

/**
 * plotly.js gzipped and base64-encoded, to embed in a self-contained HTML output (the browser
 * inflates it with DecompressionStream). Compressing takes about a second, so the result is kept
 * in memory and in the cache directory, keyed by plotly's version and size.
 */
export function plotlyPayload(): string {
  if (payload !== undefined) return payload;
  const { path, version } = plotlySource();
  const cacheFile = join(CACHE_DIR, "display", `plotly-${version}-${statSync(path).size}.js.gz.b64`);
  if (existsSync(cacheFile)) {
    payload = readFileSync(cacheFile, "utf8");
    if (payload.length > 0) return payload;
  }
  payload = gzipSync(readFileSync(path), { level: 9 }).toString("base64");
  try {
    mkdirSync(join(CACHE_DIR, "display"), { recursive: true });
    const temp = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(temp, payload);
    renameSync(temp, cacheFile);
  } catch {
    // A read-only cache only costs the compression again in the next kernel.
  }
  return payload;
}
