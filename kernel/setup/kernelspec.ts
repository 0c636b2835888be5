import { installKernelSpec, kernelSpecInstalled, userDataDir } from "../install.js";
import type { SetupStep } from "./step.js";

/** The Jupyter kernelspec for this installation, in the user's data directory. */
const kernelspec: SetupStep = {
  name: "Jupyter kernelspec",
  async done() {
    return kernelSpecInstalled(userDataDir());
  },
  async run(log) {
    log(`installed in ${installKernelSpec(userDataDir())}`);
  },
};

export function kernelspecSteps(): SetupStep[] {
  return [kernelspec];
}
