import { randomBytes } from "node:crypto";
import { DISPLAY, type DisplayOutput, type Displayable } from "./mime.js";
import { escapeHtml } from "./format.js";
import { plotlyPayload } from "./plotly-bundle.js";
import { titleText, type FigureSpec, type PlotlyAxis, type PlotlyLayout, type PlotlyTrace } from "./plotly-types.js";
import { renderSvg } from "./svg.js";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

export interface FigureOptions {
  /**
   * "full" (default) embeds plotly.js so the HTML works on its own; "light" reuses a Plotly the
   * page has already loaded and otherwise keeps the static drawing (for live updates, which would
   * otherwise resend megabytes several times a second).
   */
  variant?: "full" | "light";
}

/** JSON that can sit inside a <script> element without ending it. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** Typed arrays become plain arrays so the figure serialises the same everywhere. */
function normalise(spec: FigureSpec): FigureSpec {
  const plain = (v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v);
  const data = spec.data.map((t) => {
    const out: PlotlyTrace = { ...t };
    for (const key of ["x", "y", "text"]) if (key in out) out[key] = plain(out[key]);
    return out;
  });
  // plotly.js 3 only reads `title: {text}`; a plain string title would silently disappear.
  const layout: PlotlyLayout = { ...(spec.layout ?? {}) };
  if (typeof layout.title === "string") layout.title = { text: layout.title };
  for (const key of Object.keys(layout)) {
    const axis = layout[key] as PlotlyAxis | undefined;
    if (/^[xy]axis\d*$/.test(key) && axis && typeof axis === "object" && typeof axis.title === "string") layout[key] = { ...axis, title: { text: axis.title } };
  }
  return { data, layout, config: { displaylogo: false, ...(spec.config ?? {}) } };
}

// Runs in the browser. Plotly is loaded at most once per page (window.__tunelabPlotly), with
// RequireJS's `define` hidden so the bundle sets window.Plotly instead of registering a module.
const LOADER = `function tunelabLoadPlotly(b64) {
  return (async function () {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    var source = await new Response(stream).text();
    var amd = window.define;
    window.define = undefined;
    try {
      var s = document.createElement("script");
      s.textContent = source;
      document.head.appendChild(s);
    } finally {
      window.define = amd;
    }
    if (!window.Plotly || !window.Plotly.newPlot) throw new Error("plotly.js did not load");
    window.dispatchEvent(new Event("tunelab-plotly-ready"));
    return window.Plotly;
  })();
}`;

/** A Plotly figure that shows itself as interactive Plotly, self-contained HTML and static SVG. */
export class Figure implements Displayable {
  readonly spec: FigureSpec;
  readonly variant: "full" | "light";
  private svg: string | undefined;

  constructor(spec: FigureSpec, options: FigureOptions = {}) {
    this.spec = normalise(spec);
    this.variant = options.variant ?? "full";
  }

  /** The same figure for a live update (see FigureOptions.variant). */
  light(): Figure {
    return new Figure(this.spec, { variant: "light" });
  }

  toSVG(): string {
    this.svg ??= renderSvg(this.spec);
    return this.svg;
  }

  toHTML(): string {
    const id = `tl-fig-${randomBytes(6).toString("hex")}`;
    const alt = escapeHtml(titleText(this.spec.layout?.title) || "figure");
    // An <img> survives JupyterLab's sanitiser (inline <svg> does not), so untrusted notebooks
    // and clients without scripts still show the drawing; the script swaps in the live Plotly.
    const still = `<img class="tl-static" alt="${alt}" src="data:image/svg+xml;base64,${Buffer.from(this.toSVG()).toString("base64")}" style="max-width:100%;height:auto"/>`;
    const fetch =
      this.variant === "full"
        ? `${LOADER}\n  loading = window.__tunelabPlotly = tunelabLoadPlotly("${plotlyPayload()}");\n  loading.catch(function () { window.__tunelabPlotly = undefined; });`
        : `window.addEventListener("tunelab-plotly-ready", function () { if (root.isConnected) draw(window.Plotly); }, { once: true });\n    return;`;
    const script = `(function () {
  var root = document.getElementById("${id}");
  if (!root) return;
  var spec = ${scriptJson(this.spec)};
  function draw(Plotly) {
    var plot = document.createElement("div");
    root.appendChild(plot);
    Promise.resolve(Plotly.newPlot(plot, spec.data, spec.layout, spec.config)).then(function () {
      var still = root.querySelector(".tl-static");
      if (still) still.style.display = "none";
    }, function () { plot.remove(); });
  }
  if (window.Plotly && window.Plotly.newPlot) { draw(window.Plotly); return; }
  var loading = window.__tunelabPlotly;
  if (!loading) {
  ${fetch}
  }
  loading.then(draw, function () {});
})();`;
    return `<div id="${id}" class="tunelab-figure">\n${still}\n<script type="text/javascript">\n${script}\n</script>\n</div>`;
  }

  [DISPLAY](): DisplayOutput {
    return {
      data: {
        [PLOTLY_MIME]: { data: this.spec.data, layout: this.spec.layout, config: this.spec.config },
        "text/html": this.toHTML(),
        "image/svg+xml": this.toSVG(),
        "text/plain": `<Figure: ${titleText(this.spec.layout?.title) || `${this.spec.data.length} trace${this.spec.data.length === 1 ? "" : "s"}`}>`,
      },
      metadata: {},
    };
  }
}

export function figure(spec: FigureSpec, options: FigureOptions = {}): Figure {
  return new Figure(spec, options);
}
