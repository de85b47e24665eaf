import { defineConfig } from "vitest/config";

// Measurements, not tests: `npm run bench` prints figures.
export default defineConfig({
  test: { include: ["bench/**/*.measure.ts"], testTimeout: 120_000 },
});
