/** @deputy/scripted: the in-process scripted backend (§24), deputy's embedded default. */

/** Script reading: `loadScript(path)` for a .json/.yaml/.yml file, `parseScript(text, source)` for text. */
export { loadScript, parseScript } from "./Script.js"
/** The scripted backend: `Scripted.backend(script, options)`, `Scripted.spawn`, its options and requirements. */
export * as Scripted from "./Scripted.js"
