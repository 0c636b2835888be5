import { renameSync, writeFileSync } from "node:fs";
import { plotlyPayload } from "../display/plotly-bundle.js";
import { escapeHtml, renderMarkdown } from "./markdown.js";
import { tagsOf, text, type Cell, type Notebook, type Output } from "./notebook.js";

const PLOTLY_MIME = "application/vnd.plotly.v1+json";

export function stripAnsi(value: string): string {
  return value.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\x1b\][^\x07]*\x07/g, "");
}

/** JSON that can sit inside a <script> element without ending it. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

function dataUrl(mime: string, value: unknown): string {
  const raw = text(value as string | string[]);
  const base64 = mime === "image/svg+xml" ? Buffer.from(raw).toString("base64") : raw.replace(/\s+/g, "");
  return `data:${mime};base64,${base64}`;
}

interface RenderState {
  figures: number;
}

/**
 * One output, in the richest form the report can show: an interactive Plotly figure (its static
 * drawing until plotly.js has loaded), the output's own HTML, images, markdown, then plain text.
 */
function renderOutput(output: Output, state: RenderState): string {
  if (output.output_type === "stream") {
    return `<pre class="stream ${output.name}">${escapeHtml(stripAnsi(text(output.text)))}</pre>`;
  }
  if (output.output_type === "error") {
    const trace = output.traceback.length > 0 ? stripAnsi(output.traceback.join("\n")) : `${output.ename}: ${output.evalue}`;
    return `<div class="error"><div class="ename">${escapeHtml(output.ename)}: ${escapeHtml(stripAnsi(output.evalue))}</div><pre>${escapeHtml(trace)}</pre></div>`;
  }
  const data = output.data;
  if (data[PLOTLY_MIME] && typeof data[PLOTLY_MIME] === "object") {
    const id = `tl-report-fig-${state.figures++}`;
    const still = data["image/svg+xml"] ? `<img class="tl-static" alt="figure" src="${dataUrl("image/svg+xml", data["image/svg+xml"])}">` : "";
    return `<div class="figure" id="${id}">${still}</div>\n<script>tunelabDraw(${JSON.stringify(id)}, ${scriptJson(data[PLOTLY_MIME])});</script>`;
  }
  if (data["text/html"] !== undefined) return `<div class="html">${text(data["text/html"] as string)}</div>`;
  for (const mime of ["image/svg+xml", "image/png", "image/jpeg", "image/gif"]) {
    if (data[mime] !== undefined) return `<img class="image" alt="output" src="${dataUrl(mime, data[mime])}">`;
  }
  if (data["text/markdown"] !== undefined) return `<div class="markdown">${renderMarkdown(text(data["text/markdown"] as string))}</div>`;
  if (data["application/json"] !== undefined) return `<pre class="json">${escapeHtml(JSON.stringify(data["application/json"], null, 2))}</pre>`;
  if (data["text/plain"] !== undefined) return `<pre class="text">${escapeHtml(stripAnsi(text(data["text/plain"] as string)))}</pre>`;
  return "";
}

function renderCell(cell: Cell, state: RenderState): string {
  if (cell.cell_type === "markdown") return `<section class="cell markdown">${renderMarkdown(text(cell.source))}</section>`;
  if (cell.cell_type === "raw") return `<section class="cell raw"><pre>${escapeHtml(text(cell.source))}</pre></section>`;
  const count = cell.execution_count ?? " ";
  const tags = tagsOf(cell).filter((t) => t === "parameters" || t === "injected-parameters");
  const badge = tags.length > 0 ? ` <span class="tag">${escapeHtml(tags.join(" "))}</span>` : "";
  const outputs = cell.outputs.map((o) => renderOutput(o, state)).join("\n");
  return `<section class="cell code">
<div class="input"><div class="prompt">In [${count}]:${badge}</div><pre class="source"><code>${escapeHtml(text(cell.source))}</code></pre></div>
${outputs ? `<div class="outputs">${outputs}</div>` : ""}
</section>`;
}

const STYLE = `body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1f2328}
.cell{margin:1em 0}.prompt{color:#57606a;font:12px monospace;margin-bottom:2px}.tag{background:#ddf4ff;border-radius:3px;padding:0 4px}
pre{margin:0;padding:.6em .8em;overflow-x:auto;font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
.source{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px}.outputs{padding:.4em 0 0 .8em;border-left:3px solid #eaeef2}
.stream.stderr{background:#fff8e6}.error{background:#ffebe9;border-radius:6px}.error .ename{font-weight:600;padding:.4em .8em 0;color:#82071e}
.outputs table,.markdown table{border-collapse:collapse;font-size:13px}.outputs th,.outputs td,.markdown th,.markdown td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
.outputs th,.markdown th{background:#f6f8fa}img{max-width:100%;height:auto}.figure{min-height:1em}
header.run{color:#57606a;font-size:13px;border-bottom:1px solid #d0d7de;margin-bottom:1em;padding-bottom:.5em}`;

// Runs in the report: plotly.js is embedded once (gzip + base64) and inflated by the browser.
const LOADER = `var tunelabPlotly;
function tunelabDraw(id, spec) {
  tunelabPlotly = tunelabPlotly || (async function () {
    var b64 = document.getElementById("tl-plotly").textContent.trim();
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    var s = document.createElement("script");
    s.textContent = await new Response(stream).text();
    document.head.appendChild(s);
    return window.Plotly;
  })();
  tunelabPlotly.then(function (Plotly) {
    var root = document.getElementById(id), plot = document.createElement("div");
    root.appendChild(plot);
    return Plotly.newPlot(plot, spec.data, spec.layout || {}, Object.assign({ displaylogo: false, responsive: true }, spec.config || {})).then(function () {
      var still = root.querySelector(".tl-static");
      if (still) still.remove();
    });
  }).catch(function (e) { console.error("figure " + id + ": " + e); });
}`;

/** Renders an executed notebook as one self-contained HTML file (no network needed to view it). */
export function reportHtml(notebook: Notebook, options: { title: string }): string {
  const state: RenderState = { figures: 0 };
  const body = notebook.cells.map((c) => renderCell(c, state)).join("\n");
  const meta = notebook.metadata.tunelab as { parameters?: Record<string, unknown>; status?: string } | undefined;
  const parameters = meta?.parameters && Object.keys(meta.parameters).length > 0 ? ` · parameters ${escapeHtml(JSON.stringify(meta.parameters))}` : "";
  const kernel = notebook.metadata.kernelspec?.display_name ?? notebook.metadata.kernelspec?.name ?? "";
  const plotly = state.figures > 0 ? `<script type="text/plain" id="tl-plotly">${plotlyPayload()}</script>\n<script>${LOADER}</script>` : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<style>${STYLE}</style>
${plotly}
</head>
<body>
<header class="run">${escapeHtml(options.title)} · ${escapeHtml(kernel)} · ${escapeHtml(meta?.status ?? "")} · ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC${parameters}</header>
<main>
${body}
</main>
</body>
</html>
`;
}

export async function renderReport(notebook: Notebook, path: string, options: { title: string }): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, reportHtml(notebook, options));
  renameSync(tmp, path);
}
