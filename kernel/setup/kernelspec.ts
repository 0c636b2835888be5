import type { SetupStep } from "./step.js";

// Placeholder until this step is written; replaced by its owner.
export function kernelspecSteps(): SetupStep[] {
  return [];
}
