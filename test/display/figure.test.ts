import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { figure, PLOTLY_MIME, renderSvg, type FigureSpec } from "../../kernel/display/index.js";
import { DISPLAY, toDisplayOutput } from "../../kernel/display/mime.js";
import { plotlySource } from "../../kernel/display/plotly-bundle.js";
import { xmlProblems } from "./xml.js";

const loss: FigureSpec = {
  data: [
    { x: [1, 2, 3, 4, 5], y: [2.5, 1.9, 1.4, 1.1, 0.9], name: "train <loss>", mode: "lines" },
    { x: [2, 4], y: [2.0, 1.2], name: "val & test", mode: "lines+markers" },
  ],
  layout: { title: "Loss </script><b>", xaxis: { title: "step" }, yaxis: { title: "loss" } },
};

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length;

describe("renderSvg", () => {
  const specs: Record<string, FigureSpec> = {
    loss,
    bars: { data: [{ type: "bar", x: ["a", "b", "c"], y: [3, -1, 2], name: "A" }, { type: "bar", x: ["a", "b", "c"], y: [1, 2, 3], name: "B" }] },
    stacked: { data: [{ type: "bar", x: [1, 2], y: [3, 4] }, { type: "bar", x: [1, 2], y: [1, 1] }], layout: { barmode: "stack" } },
    log: { data: [{ x: [1, 10, 100, 1000], y: [5e-4, 2e-3, 0.1, 3], mode: "markers" }], layout: { xaxis: { type: "log" }, yaxis: { type: "log" } } },
    gaps: { data: [{ x: [0, 1, 2, 3, 4], y: [1, null, 3, Number.NaN, 5] }] },
    empty: { data: [] },
    flat: { data: [{ y: [7, 7, 7] }] },
    huge: { data: [{ x: [1e300, 2e300], y: [-1e12, 1e15], type: "scatter" }], layout: { width: 100000, height: -5 } },
    typed: { data: [{ x: Float32Array.from([0, 1, 2]) as unknown as number[], y: Float64Array.from([3, 1, 2]) as unknown as number[] }] },
    unknownTrace: { data: [{ type: "heatmap", z: [[1, 2]] }, { y: [1, 2], marker: { color: ["red", "blue"] }, mode: "markers" }] },
  };

  for (const [name, spec] of Object.entries(specs)) {
    it(`draws well-formed SVG: ${name}`, () => {
      const svg = renderSvg(spec);
      expect(xmlProblems(svg)).toEqual([]);
      expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="\d+" height="\d+"/);
      expect(svg).not.toMatch(/NaN|Infinity|undefined/);
    });
  }

  it("draws each trace: lines, markers, bars, legend, titles and ticks", () => {
    const svg = renderSvg(loss);
    const paths = svg.match(/<path d="[^"]*"/g) ?? [];
    expect(paths).toHaveLength(2);
    expect(count(paths[0]!, /[ML]/g)).toBe(5);
    expect(count(svg, /<circle /g)).toBe(2);
    expect(svg).toContain(">Loss &lt;/script&gt;&lt;b&gt;</text>");
    expect(svg).toContain(">train &lt;loss&gt;</text>");
    expect(svg).toContain(">val &amp; test</text>");
    expect(svg).toContain(">step</text>");
    expect(svg).toContain('transform="rotate(-90');
    for (const tick of ["1", "2", "3", "4", "5"]) expect(svg).toContain(`>${tick}</text>`);

    const bars = renderSvg(specs.bars!);
    const plotArea = /<g clip-path="[^"]*">([\s\S]*?)<\/g>/.exec(bars)![1]!;
    expect(count(plotArea, /<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="#(1f77b4|ff7f0e)"\/>/g)).toBe(6);
    for (const c of ["a", "b", "c"]) expect(bars).toContain(`>${c}</text>`);

    const gaps = renderSvg(specs.gaps!).match(/<path d="([^"]*)"/)![1]!;
    expect(count(gaps, /M/g)).toBe(3);

    const log = renderSvg(specs.log!);
    for (const tick of ["1", "10", "100", "1000"]) expect(log).toContain(`>${tick}</text>`);
    expect(log).toContain(">0.001</text>");
  });
});

describe("figure", () => {
  it("is a display bundle with Plotly JSON, self-contained HTML and static SVG", () => {
    const fig = figure(loss);
    const { data } = toDisplayOutput(fig);
    expect(Object.keys(data).sort()).toEqual([PLOTLY_MIME, "image/svg+xml", "text/html", "text/plain"].sort());
    const plotly = data[PLOTLY_MIME] as { data: unknown[]; layout: { title: unknown; xaxis: { title: unknown } } };
    expect(plotly.data).toHaveLength(2);
    // plotly.js 3 ignores string titles.
    expect(plotly.layout.title).toEqual({ text: "Loss </script><b>" });
    expect(plotly.layout.xaxis.title).toEqual({ text: "step" });
    expect(xmlProblems(data["image/svg+xml"] as string)).toEqual([]);
    expect(data["text/plain"]).toBe("<Figure: Loss </script><b>>");
  });

  it("puts the static drawing in the HTML and loads plotly once per page", async () => {
    const html = figure(loss).toHTML();
    const img = /<img class="tl-static" alt="[^"]*" src="data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)"/.exec(html);
    expect(img).not.toBeNull();
    const still = Buffer.from(img![1]!, "base64").toString();
    const anyClip = (svg: string) => svg.replace(/tl-clip-[0-9a-f]+/g, "tl-clip");
    expect(anyClip(still)).toBe(anyClip(figure(loss).toSVG()));
    expect(xmlProblems(still)).toEqual([]);
    expect(html).toContain("if (window.Plotly && window.Plotly.newPlot) { draw(window.Plotly); return; }");
    expect(html).toContain("window.__tunelabPlotly");
    expect(html).toContain('new DecompressionStream("gzip")');
    // The title must not end the script early.
    const script = html.slice(html.indexOf("<script"), html.lastIndexOf("</script>"));
    expect(script).not.toContain("</script>");
    expect(script).toContain("Loss \\u003c/script>\\u003cb>");

    const payload = /tunelabLoadPlotly\("([A-Za-z0-9+/=]+)"\)/.exec(html)![1]!;
    // Decode exactly as the browser does (atob + DecompressionStream).
    const bin = atob(payload);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const source = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
    expect(source).toBe(readFileSync(plotlySource().path, "utf8"));
  });

  it("offers a light variant for live updates that reuses an already loaded Plotly", () => {
    const full = figure(loss).toHTML();
    const light = figure(loss).light().toHTML();
    expect(full.length).toBeGreaterThan(1_000_000);
    expect(light.length).toBeLessThan(50_000);
    expect(light).not.toContain("tunelabLoadPlotly(");
    expect(light).toContain("if (window.Plotly && window.Plotly.newPlot) { draw(window.Plotly); return; }");
    expect(light).toContain('src="data:image/svg+xml;base64,');
    expect(figure(loss, { variant: "light" }).variant).toBe("light");
  });

  it("displays itself when returned from a cell", () => {
    const fig = figure({ data: [{ y: [1, 2] }] });
    expect(typeof fig[DISPLAY]).toBe("function");
    expect(toDisplayOutput(fig).data["text/plain"]).toBe("<Figure: 1 trace>");
  });
});

describe("renderSvg on random figures", () => {
  it("always gives well-formed SVG without NaN, whatever the data", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const datum = () => pick([() => rand() * 100 - 50, () => 10 ** (rand() * 40 - 20), () => null, () => 0, () => "cat" + Math.floor(rand() * 4), () => Number.NaN, () => -1e308, () => "<&>\"'"])();
    for (let i = 0; i < 300; i++) {
      const n = Math.floor(rand() * 30);
      const data = Array.from({ length: Math.floor(rand() * 4) }, () => ({
        type: pick([undefined, "scatter", "bar", "bar"]),
        mode: pick([undefined, "lines", "markers", "lines+markers"]),
        name: pick([undefined, "a<b", "train & val", "λ"]),
        x: rand() < 0.2 ? undefined : Array.from({ length: n }, datum),
        y: Array.from({ length: n }, datum),
      }));
      const axis = () => pick([undefined, { type: "log" }, { type: "category" }, { range: [rand() * 10, rand() * 10] as [number, number] }, { title: "t&" }]);
      const spec: FigureSpec = { data, layout: { width: pick([undefined, Number.NaN, 10, 1e9]), title: pick([undefined, "T", { text: "<x>" }]), xaxis: axis(), yaxis: axis(), barmode: pick([undefined, "stack", "overlay"]) } };
      const svg = renderSvg(spec);
      expect(xmlProblems(svg), JSON.stringify(spec)).toEqual([]);
      const bad = /.{0,80}(NaN|Infinity|undefined).{0,40}/.exec(svg);
      expect(bad?.[0], JSON.stringify(spec)).toBeUndefined();
    }
  });
});
