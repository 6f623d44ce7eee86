#!/usr/bin/env node
// The `deputy` bin: the built CLI (packages/cli/dist). In the repository, `pnpm deputy` runs it from source.
//
// CommonJS, so the line below runs before libuv starts its thread pool (an ES module entry is read
// through that pool). deputy's file work is many small calls; a pool larger than the cores left beside
// the main thread only makes each call wait on the pool's lock (BENCHMARKS.md). A size the user set is kept.
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  const cores = require("node:os").availableParallelism()
  process.env.UV_THREADPOOL_SIZE = String(Math.max(1, Math.min(4, cores - 1)))
}

import("../dist/main.js").then(({ main }) => main(process.argv.slice(2))).then((code) => process.exit(code))
