import * as aq from "arquero";
import { describe, expect, it } from "vitest";
import { formatNumber, html, markdown, table, text, withDisplay } from "../../kernel/display/index.js";
import { toDisplayOutput } from "../../kernel/display/mime.js";
import { progressLine } from "../../kernel/display/progress.js";

const rows = [
  { depth: 32, backend: "ane", ms: 1.23456, tflops: 12.5, note: "a|b <c>" },
  { depth: 48, backend: "cpu", ms: 12345.678, tflops: 0.00012, note: null },
];

describe("table", () => {
  it("renders rows as HTML with numbers right-aligned and text escaped", () => {
    const out = toDisplayOutput(table(rows, { caption: "bench" }));
    const h = out.data["text/html"] as string;
    expect(h).toContain('<caption style="text-align:left;font-weight:600;padding:4px 0">bench</caption>');
    expect(h).toContain('<th style="text-align:right;padding:2px 10px">depth</th><th style="text-align:left;padding:2px 10px">backend</th>');
    expect(h).toContain('<td style="text-align:right;padding:2px 10px">1.235</td>');
    expect(h).toContain('<td style="text-align:right;padding:2px 10px">12,345.7</td>');
    expect(h).toContain('<td style="text-align:right;padding:2px 10px">1.2e-4</td>');
    expect(h).toContain("a|b &lt;c&gt;");
    expect(h.match(/<tr>/g)).toHaveLength(3);
  });

  it("renders markdown with alignment and escaped pipes, and aligned plain text", () => {
    const out = toDisplayOutput(table(rows));
    expect(out.data["text/markdown"]).toBe(
      [
        "| depth | backend | ms | tflops | note |",
        "|---:|:---|---:|---:|:---|",
        "| 32 | ane | 1.235 | 12.5 | a\\|b <c> |",
        "| 48 | cpu | 12,345.7 | 1.2e-4 |  |",
      ].join("\n"),
    );
    expect(out.data["text/plain"]).toBe(
      [
        "depth  backend        ms  tflops  note",
        "-----  -------  --------  ------  -------",
        "   32  ane         1.235    12.5  a|b <c>",
        "   48  cpu      12,345.7  1.2e-4",
      ].join("\n"),
    );
  });

  it("reads arquero tables and limits long ones", () => {
    const t = aq.table({ step: Array.from({ length: 250 }, (_, i) => i), loss: Array.from({ length: 250 }, (_, i) => 3 / (i + 1)) });
    const shown = table(t, { maxRows: 5 });
    expect(shown.columns).toEqual(["step", "loss"]);
    expect(shown.rows).toHaveLength(5);
    expect(shown.totalRows).toBe(250);
    const out = toDisplayOutput(shown);
    expect(out.data["text/plain"]).toContain("… 245 more rows");
    expect(out.data["text/html"]).toContain("… 245 more rows");
    expect((out.data["text/markdown"] as string).split("\n")[3]).toBe("| 1 | 1.5 |");
    expect(table(t, { columns: ["loss"], maxRows: 1 }).toPlain()).toBe("loss\n----\n   3\n… 249 more rows");
  });

  it("uses per-column formatters and handles empty input", () => {
    expect(table([{ lr: 2e-4 }], { format: { lr: (v) => `${(v as number) * 1e4}e-4` } }).toPlain()).toContain("2e-4");
    const empty = toDisplayOutput(table([]));
    expect(empty.data["text/plain"]).toBe("\n");
  });
});

describe("formatting", () => {
  it("formats numbers for reading", () => {
    expect([0, 7, 12345, 1e15, 0.5, 1.23456, 123.456, 2e-4, 3.2e9, 1.5e10 + 0.5, Number.NaN, Infinity].map(formatNumber)).toEqual([
      "0", "7", "12,345", "1.000e+15", "0.5", "1.235", "123.5", "2e-4", "3,200,000,000", "1.5e10", "NaN", "∞",
    ]);
  });

  it("draws a progress line", () => {
    expect(progressLine({ label: "tune", done: 10, total: 40, fields: { loss: 1.23456, "it/s": 5.5 }, elapsedSeconds: 2 })).toBe(
      "tune  10/40 ━━━━━━──────────────────  25% · loss 1.235 · 5.5 it/s · 2.00 s, eta 6.00 s",
    );
    expect(progressLine({ done: 3 })).toBe("3");
  });
});

describe("text, markdown and html bundles", () => {
  it("make bundles that display themselves", () => {
    expect(toDisplayOutput(text("hi")).data).toEqual({ "text/plain": "hi" });
    expect(toDisplayOutput(markdown("**hi**")).data).toEqual({ "text/markdown": "**hi**", "text/plain": "**hi**" });
    expect(toDisplayOutput(html("<p>a &amp; b</p><p>c</p>")).data).toEqual({ "text/html": "<p>a &amp; b</p><p>c</p>", "text/plain": "a & b\nc" });
    const value = withDisplay({ a: 1 }, () => text("shown"));
    expect(Object.keys(value)).toEqual(["a"]);
    expect(JSON.stringify(value)).toBe('{"a":1}');
    expect(toDisplayOutput(value).data).toEqual({ "text/plain": "shown" });
  });
});
