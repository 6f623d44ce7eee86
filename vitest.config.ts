import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["@deputy/source"] },
  ssr: { resolve: { conditions: ["@deputy/source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
