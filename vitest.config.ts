import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["@deputy/source"] },
  ssr: { resolve: { conditions: ["@deputy/source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    // The JSON report lets .ci/run print one "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: ".tsbuild/vitest-results.json" }]],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
