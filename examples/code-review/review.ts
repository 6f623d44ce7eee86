/**
 * A code-review sub-agent with @deputy/sdk (docs/code-review.md): the real Codex CLI reviews a
 * workspace; its read-only commands are approved by a callback, anything else (here a `git push`)
 * is denied and logged. Offline: `@deputy/mock-model` plays the model on 127.0.0.1.
 *
 *   npx tsx --conditions=@deputy/source examples/code-review/review.ts
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockModel } from "@deputy/mock-model"
import { type ApprovalRequest, codex, Deputy } from "@deputy/sdk"
import { reviewScenario } from "../codex-review.js"

/** Codex runs commands as `bash -lc SCRIPT`: approve a script that only reads (no chaining, no redirection). */
const onlyReads = (request: ApprovalRequest) => {
  if (request.kind !== "exec") return false
  const script = request.command.at(-1) ?? ""
  return /^(cat|git (diff|log|show)) /.test(script) && !/[;&|<>`$()]/.test(script)
}

/** Reviews a fresh workspace holding one buggy file; returns the review and how each command was decided. */
export const reviewWorkspace = async (log: (line: string) => void) => {
  const model = await startMockModel(reviewScenario)
  const root = await mkdtemp(join(tmpdir(), "deputy-code-review-"))
  try {
    const [home, codexHome, workspace] = ["deputy", "codex", "workspace"].map((d) => join(root, d)) as [
      string,
      string,
      string
    ]
    await mkdir(join(workspace, "src"), { recursive: true })
    await writeFile(join(workspace, "src/add.ts"), "export const add = (a: number, b: number) => a - b\n")
    await model.writeCodexConfig(codexHome, { envKey: "DEPUTY_MOCK_MODEL_KEY" })

    await using deputy = new Deputy({
      home,
      onApproval: async (request) => {
        const decision = onlyReads(request) ? "approved" : "denied"
        log(`${decision}: ${request.kind === "exec" ? request.command.join(" ") : request.kind}`)
        return decision
      }
    })
    const reviewer = await deputy.startThread({
      name: "reviewer",
      cwd: workspace,
      backend: codex({
        cwd: workspace,
        env: { HOME: codexHome, CODEX_HOME: codexHome, DEPUTY_MOCK_MODEL_KEY: "offline" },
        approvalPolicy: "untrusted",
        sandbox: "read-only"
      })
    })
    const result = await reviewer.run("Review src/add.ts.")
    log(`review: ${result.finalResponse}`)
    return {
      review: result.finalResponse ?? "",
      decisions: result.approvals.map((a) => a.decision)
    }
  } finally {
    await model.close()
    await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  reviewWorkspace((line) => console.log(line)).catch((error: unknown) => {
    console.error(String(error))
    process.exitCode = 1
  })
}
