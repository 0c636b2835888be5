import type { SetupStep } from "./step.js";
import { bridgeSteps } from "./bridge-env.js";
import { nativeSteps } from "./native.js";
import { kernelspecSteps } from "./kernelspec.js";
import { llamaSteps } from "./llama-cpp.js";
import { testToolSteps } from "./test-tools.js";

/** Everything a fresh machine needs beyond `npm install`, in order. Each step is idempotent. */
export function allSteps(): SetupStep[] {
  return [...kernelspecSteps(), ...bridgeSteps(), ...nativeSteps(), ...llamaSteps(), ...testToolSteps()];
}

export async function run(argv: string[]): Promise<number> {
  const withTests = argv.includes("--test");
  const only = argv.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",");
  const steps = allSteps().filter((s) => (withTests || !s.testOnly) && (!only || only.includes(s.name)));
  for (const step of steps) {
    if (await step.done()) {
      console.log(`setup: ${step.name}: ready`);
      continue;
    }
    const started = Date.now();
    console.log(`setup: ${step.name}: installing...`);
    try {
      await step.run((line) => {
        if (line) console.log(`  ${step.name} | ${line.split("\n").join(`\n  ${step.name} | `)}`);
      });
    } catch (error) {
      console.error(`setup: ${step.name} failed: ${(error as Error).message}`);
      return 1;
    }
    console.log(`setup: ${step.name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return 0;
}
