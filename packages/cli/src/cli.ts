/** Runs `deputy` from source (`pnpm deputy …` in the repository); the installed bin runs dist/main.js the same way. */
import { main } from "./main.js"

process.exit(await main(process.argv.slice(2)))
