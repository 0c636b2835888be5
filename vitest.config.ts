import { defineConfig } from "vitest/config";

// Test files share two cores and some start real kernels, bridges and MLX training:
// run files one at a time so that timing-sensitive tests (heartbeat, interrupts) are not starved.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ["default"],
  },
});
