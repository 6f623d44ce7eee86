#!/usr/bin/env node
// The `deputy` bin: the built CLI (packages/cli/dist). In the repository, `pnpm deputy` runs it from source.
import { main } from "../dist/main.js"

process.exit(await main(process.argv.slice(2)))
