import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { figure, type FigureSpec } from "../../kernel/display/index.js";

/** A system Chromium (playwright-core ships no browser); the test needs a real one to mean anything. */
const BROWSER = [process.env.TUNELAB_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(
  (p): p is string => p !== undefined && existsSync(p),
);

const spec: FigureSpec = {
  data: [
    { x: [1, 2, 3, 4], y: [2.4, 1.6, 1.1, 0.8], name: "train" },
    { type: "bar", x: [1, 2, 3, 4], y: [0.5, 0.4, 0.3, 0.2], name: "lr" },
  ],
  layout: { title: "Loss in the browser", xaxis: { title: "step" } },
};

describe.skipIf(!BROWSER)("figure HTML in Chromium", () => {
  let browser: Browser;
  let dir: string;
  let page: string;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: BROWSER, args: ["--no-sandbox", "--disable-gpu"] });
    dir = mkdtempSync(join(tmpdir(), "tunelab-figure-"));
    page = join(dir, "page.html");
    // A live (light) update shown before the final figure must wait for the one plotly load.
    writeFileSync(page, `<!doctype html><meta charset="utf-8"><body>${figure(spec).light().toHTML()}${figure(spec).toHTML()}</body>`);
  });

  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loads the embedded plotly once and draws every figure interactively", async () => {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on("pageerror", (e) => errors.push(e.message));
    await tab.goto(pathToFileURL(page).href);
    await tab.waitForFunction(() => document.querySelectorAll(".js-plotly-plot").length === 2, null, { timeout: 60_000 });
    const state = await tab.evaluate(() => ({
      statics: [...document.querySelectorAll<HTMLElement>(".tl-static")].map((e) => e.style.display),
      titles: [...document.querySelectorAll(".gtitle")].map((e) => e.textContent),
      scripts: document.head.querySelectorAll("script").length,
    }));
    expect(errors).toEqual([]);
    expect(state.statics).toEqual(["none", "none"]);
    expect(state.titles).toEqual(["Loss in the browser", "Loss in the browser"]);
    expect(state.scripts).toBe(1);
  });

  it("shows the static drawing when scripts do not run", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const tab = await context.newPage();
    await tab.goto(pathToFileURL(page).href);
    const images = await tab.evaluate(() =>
      Promise.all(
        [...document.querySelectorAll<HTMLImageElement>(".tl-static")].map(async (img) => {
          await img.decode();
          return { width: img.naturalWidth, height: img.naturalHeight };
        }),
      ),
    );
    expect(images).toEqual([{ width: 720, height: 420 }, { width: 720, height: 420 }]);
    expect(await tab.locator(".js-plotly-plot").count()).toBe(0);
    await context.close();
  });
});
