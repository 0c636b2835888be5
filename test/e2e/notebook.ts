import { delimiter } from "node:path";
import { expect } from "vitest";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { codeCell, markdownCell, pythonKernelPath, tunelabKernelPath, writeTestNotebook } from "../runner/fixtures.js";

/** JUPYTER_PATH with the tunelab kernelspec (and ipykernel's, for comparisons). */
export function kernelEnv(): NodeJS.ProcessEnv {
  return { JUPYTER_PATH: [tunelabKernelPath(), pythonKernelPath()].join(delimiter) };
}

/** A TypeScript notebook that shows a loss curve and a results table through tunelab/display. */
export function figureNotebook(dir: string, name = "figure.ipynb"): string {
  return writeTestNotebook(dir, name, "tunelab", [
    markdownCell("# Loss curve and results\n\nA figure and a table from TypeScript cells, executed by `tunelab run`."),
    codeCell("const steps = 4;", ["parameters"]),
    codeCell(
      'import { figure, table } from "tunelab/display";\n' +
        "const loss = Array.from({ length: steps }, (_, i) => 3 / (1 + i * 0.6));\n" +
        'figure({ data: [{ type: "scatter", mode: "lines+markers", x: loss.map((_, i) => i + 1), y: loss, name: "train loss" }], layout: { title: { text: "Loss" }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "loss" } } } })',
    ),
    codeCell('table([{ run: "identity", iters: steps, "final loss": loss[steps - 1] }, { run: "baseline", iters: 0, "final loss": loss[0] }])'),
  ]);
}

const PLOTLY = "application/vnd.plotly.v1+json";

/** Figures must render without a browser and without plotly (GitHub, nbviewer): a static SVG rides along. */
export function expectStaticFigures(notebook: Notebook): void {
  for (const cell of notebook.cells.filter((c): c is CodeCell => c.cell_type === "code")) {
    for (const o of cell.outputs) {
      if (o.output_type !== "display_data" && o.output_type !== "execute_result") continue;
      const html = [o.data["text/html"] ?? ""].flat().join("");
      if (o.data[PLOTLY] || html.includes("tunelab-figure")) {
        expect(Object.keys(o.data), `a figure in cell ${cell.execution_count}`).toEqual(expect.arrayContaining(["image/svg+xml", "text/html"]));
      }
    }
  }
}
