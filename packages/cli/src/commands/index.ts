/**
 * The subcommands of `deputy`, in the order `--help` lists them. A new subcommand is one file in this
 * folder exporting a `Command`, and one entry here.
 */
import { chat } from "./chat.js"
import { mockModel } from "./mockModel.js"
import { pipeline } from "./pipeline.js"
import { run } from "./run.js"
import { stress } from "./stress.js"
import { threads } from "./threads.js"

/** Every subcommand. */
export const commands = [run, chat, pipeline, threads, stress, mockModel] as const
