/**
 * @deputy/cli: the `deputy` command. Most people run the bin (`npx @deputy/cli …`); `main` runs the
 * same command in-process and resolves to its exit code.
 */
export { CliError, ExitCode } from "./errors.js"
export { main, VERSION } from "./main.js"
