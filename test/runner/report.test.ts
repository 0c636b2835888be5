import { describe, expect, it } from "vitest";
import { DISPLAY } from "../../kernel/display/mime.js";
import { figure, table } from "../../kernel/display/index.js";
import { renderMarkdown } from "../../kernel/runner/markdown.js";
import type { Notebook } from "../../kernel/runner/notebook.js";
import { reportHtml, stripAnsi } from "../../kernel/runner/report.js";

function executedNotebook(): Notebook {
  const fig = figure({ data: [{ type: "scatter", x: [1, 2, 3], y: [3, 2, 1], name: "loss" }], layout: { title: { text: "Loss" } } })[DISPLAY]();
  const tab = table([{ step: 1, loss: 2.5 }, { step: 2, loss: 1.25 }])[DISPLAY]();
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "tunelab", display_name: "TypeScript (tunelab)" }, tunelab: { parameters: { iters: 4 }, status: "ok" } },
    cells: [
      { cell_type: "markdown", metadata: {}, source: "# Report <script>alert(1)</script>\n\n| a | b |\n|---|---|\n| **1** | [x](javascript:alert(1)) |" },
      {
        cell_type: "code",
        metadata: {},
        execution_count: 1,
        source: "figure(...)",
        outputs: [
          { output_type: "display_data", data: fig.data, metadata: {} },
          { output_type: "execute_result", data: tab.data, metadata: {}, execution_count: 1 },
          { output_type: "stream", name: "stdout", text: ["step 1\n", "step 2\n"] },
        ],
      },
      {
        cell_type: "code",
        metadata: {},
        execution_count: 2,
        source: "boom()",
        outputs: [{ output_type: "error", ename: "TypeError", evalue: "boom is not a function", traceback: ["\u001b[31mTypeError\u001b[0m: boom is not a function", "    at cell 2"] }],
      },
    ],
  };
}

describe("the HTML report", () => {
  it("embeds plotly once and draws each figure from its JSON, over the static SVG", () => {
    const html = reportHtml(executedNotebook(), { title: "demo.ipynb" });
    expect(html.match(/id="tl-plotly"/g)).toHaveLength(1);
    expect(html).toContain('tunelabDraw("tl-report-fig-0"');
    expect(html).toContain('class="tl-static"');
    expect(html).toMatch(/src="data:image\/svg\+xml;base64,/);
    // Self-contained: nothing is fetched from the network.
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
  });

  it("keeps tables, streams and errors, without terminal colour codes", () => {
    const html = reportHtml(executedNotebook(), { title: "demo.ipynb" });
    expect(html).toMatch(/<table[\s\S]*2\.5[\s\S]*1\.25[\s\S]*<\/table>/);
    expect(html).toContain("step 1\nstep 2\n");
    expect(html).toContain("TypeError: boom is not a function");
    expect(html).not.toContain("\u001b");
    expect(html).toContain("parameters {&quot;iters&quot;:4}");
  });

  it("renders markdown safely", () => {
    const out = renderMarkdown("# Title <script>alert(1)</script>\n\nSome *em* and **strong** and `code <b>`.\n\n- one\n- two\n\n[bad](javascript:alert(1)) [good](https://example.com)");
    expect(out).toContain("<h1>Title &lt;script&gt;alert(1)&lt;/script&gt;</h1>");
    expect(out).toContain("<em>em</em>");
    expect(out).toContain("<strong>strong</strong>");
    expect(out).toContain("<code>code &lt;b&gt;</code>");
    expect(out).toContain("<ul><li>one</li><li>two</li></ul>");
    expect(out).not.toContain('href="javascript');
    expect(out).toContain('<a href="https://example.com">good</a>');
    expect(stripAnsi("\u001b[1;31mred\u001b[0m")).toBe("red");
  });
});
