// §27: exec rules judge the simple commands a shell script runs, attacked as a sub-agent would.
import { spawnSync } from "node:child_process"
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { decodePolicy, judgeExec, type Policy, policy, policyExecVerdict } from "../src/Policy.js"
import { analyzeCommand, type ShellParser, shellParser } from "../src/ShellScript.js"

let shell: ShellParser
beforeAll(async () => {
  shell = await Effect.runPromise(shellParser)
})

const decide = (rules: Policy, command: ReadonlyArray<string>) => judgeExec(rules, shell, command)
const approves = (rules: Policy, command: ReadonlyArray<string>) =>
  ["approved", "approved_for_session"].includes(decide(rules, command).decision)

const bash = (script: string) => ["bash", "-lc", script]

/** The allow rules a read-only reviewer might write. */
const readers: Record<string, Policy> = {
  "prefix [cat]": policy({ exec: [{ prefix: ["cat"], decision: "approved" }] }),
  "the old code-review regex": policy({
    exec: [{ regex: "^(/bin/)?(ba)?sh -lc (cat|git diff|git log) ", decision: "approved" }]
  }),
  "a per-command regex": policy({ exec: [{ regex: "^(cat|head) [A-Za-z0-9._/ -]+$", decision: "approved" }] }),
  "policy.readOnly": policy.readOnly
}

/** What an attacker tries; none of it may be approved by any of `readers`. */
const attacks: ReadonlyArray<ReadonlyArray<string>> = [
  // operators
  bash("cat a; rm -rf b"),
  bash("cat a && rm b"),
  bash("cat a || rm b"),
  bash("cat a | sh"),
  bash("cat a |& tee b"),
  bash("cat a & rm b"),
  bash("cat a &"),
  bash("cat a\nrm b"),
  bash("cat a\r\nrm b"),
  bash("ls -la\\\ncat a"),
  bash("git status; git push origin main"),
  // tree-sitter-bash reads `ls rm -rf b` here; bash runs `rm -rf b` on its own line
  bash("ls|ls|ls\nrm -rf b&&ls"),
  bash("cat a|cat a|cat a\nrm b&&cat a"),
  // quoting: ANSI-C, substitutions
  bash("cat $'a\\x3b rm b'"),
  bash('cat $"a"'),
  bash("cat $(rm b)"),
  bash("cat `rm b`"),
  bash('cat "$(rm b)"'),
  bash('cat "a`rm b`"'),
  bash("cat <(rm b)"),
  bash("cat $HOME/.ssh/id_rsa"),
  bash("cat $" + "{a}"), // ${a}, spelled so no linter mistakes it for a template
  bash("cat $((1+1))"),
  // redirections and here-documents
  bash("cat a > b"),
  bash("cat a >> ~/.bashrc"),
  bash("cat < /etc/shadow"),
  bash("cat a 2>&1"),
  bash("cat <<EOF\nx\nEOF"),
  bash("cat <<< x"),
  bash("cat src/add.ts; echo PWNED > pushed.txt"),
  // globbing and other expansion in command position
  bash("/bin/c?t a"),
  bash("c* a"),
  bash("[c]at a"),
  bash("{cat,a}"),
  bash("cat ~/.ssh/id_rsa"),
  bash("cat a=~/.ssh/id_rsa"),
  bash("$X a"),
  // assignments and wrappers
  bash("X=1 cat a"),
  bash("PATH=/tmp/evil cat a"),
  bash("env X=1 rm b"),
  bash("env LD_PRELOAD=/tmp/evil.so cat a"),
  bash("env -i cat a"),
  bash("echo a | xargs rm"),
  bash("echo a | xargs cat"),
  bash("sudo cat a"),
  bash("timeout 5 cat a"),
  bash("nice cat a"),
  bash("exec cat a"),
  bash("command cat a"),
  bash("time cat a"),
  ["env", "X=1", "rm", "b"],
  ["xargs", "cat"],
  ["sudo", "cat", "a"],
  // find -exec and friends, git -c, writing flags
  bash("find . -exec rm {} ;"),
  ["find", ".", "-exec", "rm", "{}", ";"],
  ["find", ".", "-delete"],
  ["find", ".", "-fprint", "/tmp/x"],
  ["git", "-c", "core.pager=sh -c 'rm b'", "log"],
  bash("git -c core.pager=rm log"),
  ["git", "-ccore.pager=rm", "log"],
  ["git", "--git-dir=/tmp/evil", "log"],
  ["git", "diff", "--output=/tmp/x"],
  ["git", "log", "--outp=/tmp/x"],
  ["git", "diff", "--ext-diff"],
  ["git", "show", "--textconv", "HEAD"],
  ["git", "branch", "-D", "main"],
  ["git", "branch", "evil"],
  ["git", "push", "origin", "main"],
  ["rg", "--pre", "sh", "x"],
  ["rg", "--pre=sh", "x"],
  ["rg", "-nz", "x"],
  ["sed", "-i", "s/a/b/", "f"],
  ["sed", "-n", "1w /tmp/x", "f"],
  ["sed", "-n", "1e rm b", "f"],
  ["sort", "-o", "f", "a"],
  ["sort", "--compress-prog=sh", "a"],
  ["uniq", "a", "b"],
  // aliases, functions, eval and friends
  ["bash", "-ic", "cat a"],
  ["bash", "-lic", "cat a"],
  ["bash", "-i", "-c", "cat a"],
  bash("alias cat=rm; cat a"),
  bash('cat() { rm "$@"; }; cat a'),
  bash("eval cat a"),
  bash("source ./x; cat a"),
  bash(". ./x"),
  bash("trap 'rm b' EXIT; cat a"),
  bash("coproc cat a"),
  // shells run other ways
  ["bash", "script.sh"],
  ["bash", "-lc", "cat a", "extra"],
  ["bash", "-x", "-c", "cat a"],
  ["/tmp/evil/bash", "-lc", "cat a"],
  ["/tmp/evil/env", "cat", "a"],
  bash("./env cat a"),
  ["./cat", "a"],
  ["constructor"],
  ["__proto__"],
  bash("toString a"),
  // quoting tricks
  bash("cat 'a; rm b"),
  bash('cat "a'),
  bash("c\\at a"),
  bash("cat a\\;rm b"),
  bash('cat "a"$(rm b)'),
  // structure
  bash("(cat a)"),
  bash("{ cat a; }"),
  bash("if true; then cat a; fi"),
  bash("for f in a; do cat $f; done"),
  bash("! cat a"),
  bash("cat a # ; rm b"),
  bash(""),
  // unicode look-alikes and invisible characters
  bash("cat a；rm b"),
  bash("ｃat a"),
  ["ｃat", "a"],
  bash("cat\u00a0a"),
  bash("cat a\u2028rm b"),
  bash("cat a\u200b"),
  // nested shells
  bash("bash -c 'cat a; rm b'"),
  bash("sh -c \"cat a && sh -c 'rm b'\""),
  bash("cat a && bash -ic 'cat b'"),
  bash("bash -c 'cat $(rm b)'"),
  // zsh's own expansions
  ["zsh", "-lc", "cat =rm"],
  ["zsh", "-lc", "cat ^a"]
]

/** Plain read-only commands, direct and through a shell, that the read-only preset approves. */
const reads: ReadonlyArray<ReadonlyArray<string>> = [
  ["cat", "a"],
  ["cat", "src/add.ts"],
  ["/bin/cat", "a"],
  ["ls", "-la"],
  ["head", "-n", "20", "a"],
  ["wc", "-l", "a"],
  ["grep", "-rn", "TODO", "."],
  ["rg", "-n", "TODO", "src"],
  ["find", ".", "-name", "*.ts"],
  ["sed", "-n", "1,20p", "a.ts"],
  ["git", "status"],
  ["git", "diff", "--stat"],
  ["git", "diff", "--no-ext-diff"],
  ["git", "log", "-n", "5", "--oneline"],
  ["git", "show", "HEAD~1"],
  ["git", "-C", "repo", "status"],
  ["git", "--no-pager", "log", "-p"],
  ["git", "branch"],
  ["git", "branch", "--show-current"],
  ["git", "blame", "a.ts"],
  bash("cat a && git diff"),
  bash("cat src/add.ts"),
  ["/bin/bash", "-lc", "cat a"],
  ["/usr/bin/env", "bash", "-lc", "ls -la | wc -l"],
  ["sh", "-c", "git status; git log --oneline -n 3"],
  ["bash", "-l", "-c", "cat a"],
  ["zsh", "-lc", "cat a"],
  ["dash", "-c", "cat a"],
  bash("rg -n 'foo bar' src"),
  bash('cat "file with spaces.txt"'),
  bash("grep -n x a || true"),
  bash("find . -name '*.ts' | head -n 5"),
  bash("cat a\ngit status"),
  bash("bash -c 'cat a && git log -n 1'"),
  bash("git log --format='%h %s' -n 3"),
  bash("env cat a")
]

describe("§27 shell-aware exec rules", () => {
  it("has a corpus of at least 50 attacks", () => {
    expect(attacks.length).toBeGreaterThanOrEqual(50)
  })

  for (const [name, rules] of Object.entries(readers)) {
    it(`${name} approves none of the attacks`, () => {
      const approved = attacks.filter((command) => approves(rules, command))
      expect(approved.map((c) => JSON.stringify(c))).toEqual([])
    })
  }

  it("policy.readOnly approves every plain read-only command, direct or through a shell", () => {
    const refused = reads.filter((command) => !approves(policy.readOnly, command))
    expect(refused.map((c) => [JSON.stringify(c), decide(policy.readOnly, c).reason])).toEqual([])
  })

  it("a prefix rule approves its command through any shell form, and each command of a plain script", () => {
    const cat = readers["prefix [cat]"]!
    for (const command of [
      ["cat", "a"],
      bash("cat a"),
      bash("cat a && cat b | cat"),
      bash("cat 'a b'"),
      ["sh", "-c", "cat a"]
    ]) {
      expect(decide(cat, command).decision, JSON.stringify(command)).toBe("approved")
    }
    // Each command must be approved: cat alone does not approve git.
    expect(decide(cat, bash("cat a && git diff")).decision).toBe("denied")
  })

  it("a per-command regex approves each plain command it matches", () => {
    expect(decide(readers["a per-command regex"]!, bash("cat a && head -n 3 b")).decision).toBe("approved")
  })

  it("approved_for_session only when every command's rule says so", () => {
    const rules = policy({
      exec: [
        { prefix: ["cat"], decision: "approved_for_session" },
        { prefix: ["ls"], decision: "approved" }
      ]
    })
    expect(decide(rules, bash("cat a; cat b")).decision).toBe("approved_for_session")
    expect(decide(rules, bash("cat a; ls")).decision).toBe("approved")
  })

  it("what an allow rule cannot approve falls to an ask rule or the default", () => {
    const asking = policy({ exec: [{ prefix: ["cat"], decision: "approved" }], default: "ask" })
    expect(decide(asking, bash("cat a > b"))).toMatchObject({ decision: "ask" })
    expect(decide(asking, bash("cat a > b")).reason).toContain("redirected statement")
  })
})

describe("§27 deny and ask rules see every command", () => {
  const guarded = policy({ exec: [{ prefix: ["rm"], decision: "denied" }], default: "approved" })
  const denied: ReadonlyArray<ReadonlyArray<string>> = [
    ["rm", "-rf", "b"],
    bash("cat a; rm b"),
    bash("cat $(rm b)"),
    bash("(cd x && rm b)"),
    bash("f() { rm b; }; f"),
    bash("r\\m b"),
    bash("'rm' b"),
    bash("bash -c 'sh -c \"rm b\"'"),
    bash("sudo -u root rm b"),
    bash("echo b | xargs rm"),
    bash("env X=1 rm b"),
    bash("timeout 5 bash -lc 'rm b'"),
    bash("find . -name x -exec rm {} ;"),
    ["/usr/bin/env", "rm", "b"],
    ["/bin/rm", "-rf", "b"],
    bash("/bin/rm b"),
    bash("su -c 'rm b'"),
    bash("watch 'rm b'"),
    bash("env -S 'rm b'"),
    bash("find . -exec {} ;"),
    // Only the shell knows these words: the deny rule cannot be ruled out.
    bash("$X b"),
    bash("r* b"),
    bash("eval 'rm b'"),
    ["bash", "-ic", "cat a"],
    ["bash", "script.sh"]
  ]
  for (const command of denied) {
    it(`denies ${JSON.stringify(command)}`, () => {
      expect(decide(guarded, command).decision).toBe("denied")
    })
  }

  it("sees the arguments tree-sitter files under a redirection (`git > f push`)", () => {
    const noPush = policy({ exec: [{ prefix: ["git", "push"], decision: "denied" }], default: "approved" })
    for (const script of ["git > f push", "git 2>/dev/null push origin", "git <<EOF push\nEOF", "git <<<x push"]) {
      expect(decide(noPush, bash(script)).decision, script).toBe("denied")
    }
    expect(decide(noPush, bash("git status > f")).decision).toBe("approved")
  })

  it("does not trust a command tree-sitter reads across a line break", () => {
    expect(decide(guarded, bash("ls|ls|ls\nrm -rf /&&ls")).decision).toBe("denied")
    // Even a harmless script read that way cannot rule the deny rule out.
    expect(decide(guarded, bash("ls|ls|ls\ncat a&&ls")).reason).toContain("across a line break")
  })

  it("leaves alone what the deny rule provably does not match", () => {
    expect(decide(guarded, bash("cat a > b")).decision).toBe("approved")
    expect(decide(guarded, bash("grep rm a")).decision).toBe("approved")
    expect(decide(guarded, bash("cat $X")).decision).toBe("approved")
  })

  it("an ask rule matching any command asks", () => {
    const rules = policy({
      exec: [
        { preset: "read_only", decision: "approved" },
        { prefix: ["git", "push"], decision: "ask" }
      ]
    })
    expect(decide(rules, bash("git status && git push")).decision).toBe("ask")
  })
})

describe("§36 bounded: a hostile script is judged, never a crash", () => {
  it("15,000 nested subshells, 4,000 nested wrappers and a 65,540-character script are not approved", () => {
    const deep = `${"( ".repeat(15_000)}cat a${" )".repeat(15_000)}`
    expect(decide(policy.readOnly, bash(deep)).reason).toContain("subshell")
    const wrapped = ["sudo", ...Array.from({ length: 2_000 }, () => ["sudo", "su -c 'rm b'"]).flat()]
    expect(decide(policy.readOnly, wrapped).decision).toBe("denied")
    const long = bash(`cat ${"a".repeat(65_536)}`)
    expect(decide(policy.readOnly, long).reason).toContain("longer than 65536 characters")
    expect(decide(policy({ exec: [{ prefix: ["rm"], decision: "denied" }], default: "approved" }), long).decision).toBe(
      "denied"
    )
  })
})

describe("the read_only preset as data", () => {
  it.effect("decodes from a policy file and means what policy.readOnly means", () =>
    Effect.gen(function* () {
      const rules = yield* decodePolicy({ exec: [{ preset: "read_only", decision: "approved" }] }, "policy.yaml")
      assert.deepStrictEqual(rules, policy.readOnly)
      const error = yield* Effect.flip(decodePolicy({ exec: [{ preset: "read_write", decision: "approved" }] }))
      assert.strictEqual(error._tag, "InvalidInput")
    })
  )
})

describe("§27 a script that does not parse is denied with the parser's message", () => {
  it.effect("even under a default of approved", () =>
    Effect.gen(function* () {
      const verdict = yield* policyExecVerdict(policy({ default: "approved" }), bash('cat "a'))
      assert.strictEqual(verdict.decision, "denied")
      assert.match(verdict.reason, /^the script does not parse: .*line 1, column \d+/)
    })
  )
})

describe("finding 1, as the attack", () => {
  const codeReview = readers["the old code-review regex"]!

  it("the code-review regex no longer approves a read followed by a write and a push", () => {
    const attack = bash("cat src/add.ts; echo PWNED > pushed.txt; git push origin main")
    expect(decide(codeReview, attack).decision).toBe("denied")
    expect(decide(policy.readOnly, attack).decision).toBe("denied")
  })

  it('a prefix rule approves `bash -lc "cat a"`', () => {
    expect(decide(readers["prefix [cat]"]!, bash("cat a")).decision).toBe("approved")
  })

  it.effect("regex rules are RE2: a backreference or lookaround is refused at decode, naming the regex", () =>
    Effect.gen(function* () {
      for (const regex of ["^(a)\\1$", "^(?=cat)"]) {
        const error = yield* Effect.flip(decodePolicy({ exec: [{ regex, decision: "approved" }] }, "policy.yaml"))
        assert.strictEqual(error._tag, "InvalidInput")
        assert.include(error.issues.join("\n"), `exec.0.regex: ${JSON.stringify(regex)} is not a linear-time (RE2)`)
      }
    })
  )

  it("a catastrophic regex is accepted and runs on RE2 (its timing is in test/bench/policy.bench.ts)", () => {
    const rules = policy({ exec: [{ regex: "^(a+)+$", decision: "denied" }], default: "approved" })
    expect(decide(rules, ["a".repeat(10_000)]).decision).toBe("denied")
    expect(decide(rules, [`${"a".repeat(10_000)}!`]).decision).toBe("approved")
  })
})

describe("§27 property: an allow rule approves only plain scripts of approved commands", () => {
  const allowed: ReadonlyArray<ReadonlyArray<string>> = [["cat"], ["git", "status"], ["ls"], ["head", "-n"]]
  const rules = policy({ exec: allowed.map((prefix) => ({ prefix: [...prefix], decision: "approved" as const })) })
  const commands = fc.constantFrom("cat a", "cat src/x.ts", "git status", "ls -la", "head -n 3 b", "cat a-b_c.d")
  const connectors = fc.constantFrom("&&", "||", ";", "|", "\n", " && ", " | ", "; ")
  // Without newlines: tree-sitter-bash misreads `a|b|c<newline>d&&e` (one command `c d`), which is
  // then not approved (fail closed; tested above), so a newline after a pipeline is not always approved.
  const sameLine = fc.constantFrom("&&", "||", ";", "|", " && ", " | ", "; ")
  const foreign = fc.oneof(
    fc.constantFrom(
      "rm x",
      "> out",
      "$(rm x)",
      "`rm x`",
      " & ",
      "X=1 ",
      "<<EOF\nEOF\n",
      "*",
      "$HOME",
      "(",
      ")",
      "{ ",
      " }",
      "'",
      '"',
      "\\",
      "#",
      "~",
      "<(rm x)",
      "!",
      ";;",
      "|&",
      "\r",
      "\u00a0",
      "；",
      "eval ",
      "sudo ",
      "bash -c ",
      "=",
      "$'\\n'"
    ),
    fc.string({ maxLength: 4 }),
    fc.string({ unit: "grapheme", maxLength: 2 })
  )
  const glue = (joiners: fc.Arbitrary<string>) =>
    fc
      .tuple(fc.array(fc.tuple(commands, joiners), { minLength: 1, maxLength: 4 }), commands)
      .map(([pairs, last]) => pairs.map(([c, k]) => c + k).join("") + last)
  const script = glue(connectors)

  /**
   * An oracle independent of tree-sitter: a tiny lexer for the plain subset only (unquoted safe
   * characters, '…', "…" without expansions), split on the four connectors and newlines; every
   * command must start with an allowed prefix. Anything else makes it say false.
   */
  const plainOracle = (text: string): boolean => {
    const commands: Array<Array<string>> = [[]]
    let word: string | undefined
    const endWord = () => {
      if (word !== undefined) commands[commands.length - 1]?.push(word)
      word = undefined
    }
    let i = 0
    while (i < text.length) {
      const c = text[i] ?? ""
      const op = ["&&", "||", ";", "|", "\n"].find((o) => text.startsWith(o, i))
      if (c === " " || c === "\t") {
        endWord()
        i++
      } else if (op !== undefined) {
        endWord()
        commands.push([])
        i += op.length
      } else if (c === "'") {
        const end = text.indexOf("'", i + 1)
        if (end < 0) return false
        word = (word ?? "") + text.slice(i + 1, end)
        i = end + 1
      } else if (c === '"') {
        let value = ""
        for (i++; text[i] !== '"'; i++) {
          const d = text[i]
          if (d === undefined || d === "$" || d === "`") return false
          if (d === "\\" && /[$`"\\\n]/.test(text[i + 1] ?? "")) i++
          if (text[i] !== "\n" || d !== "\\") value += text[i] // `\<newline>` is a line continuation
        }
        word = (word ?? "") + value
        i++
      } else {
        if (!/^[A-Za-z0-9._/,:+@%^~=-]$/.test(c)) return false
        if (word === undefined && (c === "~" || c === "=")) return false
        if (c === "~" && /[=:]/.test(text[i - 1] ?? "")) return false
        word = (word ?? "") + c
        i++
      }
    }
    endWord()
    return commands.every(
      (words) => words.length === 0 || allowed.some((prefix) => prefix.every((p, k) => words[k] === p))
    )
  }

  it.prop("scripts of approved commands and the four connectors are approved", [glue(sameLine)], ([text]) => {
    expect(decide(rules, bash(text)).decision).toBe("approved")
  })

  it.prop(
    "with arbitrary shell syntax glued in anywhere, approval implies a plain script of approved commands",
    [script, foreign, fc.nat()],
    ([text, glue, at]) => {
      const cut = at % (text.length + 1)
      const glued = text.slice(0, cut) + glue + text.slice(cut)
      if (approves(rules, bash(glued))) expect(plainOracle(glued), JSON.stringify(glued)).toBe(true)
    },
    { fastCheck: { numRuns: 300 } }
  )
})

/**
 * Differential test against real bash: run each approved script with every builtin disabled and a
 * PATH of stubs that log their argv (a command bash cannot find is logged by command_not_found_handle),
 * and check that bash ran nothing the policy did not approve, word for word.
 */
describe("§27 property, against real bash: an approved script runs only the approved commands", () => {
  const root = mkdtempSync(join(tmpdir(), "deputy-shell-diff-"))
  afterAll(() => rmSync(root, { recursive: true, force: true }))
  const bin = join(root, "bin")
  mkdirSync(bin)
  const stub = join(bin, "stub")
  // dash's own printf, one process per command; the pid names the record.
  writeFileSync(stub, `#!/bin/sh\nprintf '%s\\037' "\${0##*/}" "$@" > "$DEPUTY_LOG/run.$$"\n`)
  chmodSync(stub, 0o755)
  for (const name of ["cat", "git", "ls", "head"]) symlinkSync(stub, join(bin, name))
  const bashEnv = join(root, "env.sh")
  writeFileSync(
    bashEnv,
    [
      // No builtin may run here (all are disabled, `return` too): the handler's status is printf's.
      'command_not_found_handle() { /usr/bin/printf \'%s\\037\' "$@" > "$DEPUTY_LOG/missing.$BASHPID"; }',
      'for b in $(compgen -b); do case $b in enable) ;; *) enable -n "$b" ;; esac; done',
      "enable -n enable"
    ].join("\n")
  )
  let run = 0
  /** What bash ran, one argv per command, as "\u001f"-joined strings. */
  const ranBy = (script: string): Array<string> => {
    const log = join(root, `log-${run++}`)
    mkdirSync(log)
    const result = spawnSync("/bin/bash", ["-c", script], {
      env: { PATH: bin, DEPUTY_LOG: log, BASH_ENV: bashEnv },
      cwd: root,
      timeout: 10_000,
      stdio: "ignore"
    })
    if (result.error) throw result.error
    // Each word ends with \u001f: drop the last one.
    return readdirSync(log).map((f) => readFileSync(join(log, f), "utf8").slice(0, -1))
  }
  const rules = policy({
    exec: [["cat"], ["git", "status"], ["ls"], ["head", "-n"]].map((prefix) => ({
      prefix,
      decision: "approved" as const
    }))
  })
  const commands = fc.constantFrom("cat a", "git status", "ls -la", "head -n 3 b", "cat 'x y'")
  const connectors = fc.constantFrom("&&", "||", ";", "|", "\n", " | ", "; ")
  const foreign = fc.oneof(
    fc.constantFrom("rm x", "\nrm x", " rm x", "echo x", "$(rm x)", "`rm x`", "\\\n", "'", '"', "#", "&"),
    fc.string({ maxLength: 4 })
  )
  const script = fc
    .tuple(fc.array(fc.tuple(commands, connectors), { minLength: 1, maxLength: 4 }), commands, foreign, fc.nat())
    .map(([pairs, last, glue, at]) => {
      const text = pairs.map(([c, k]) => c + k).join("") + last
      const cut = at % (text.length + 1)
      return text.slice(0, cut) + glue + text.slice(cut)
    })

  it("the stubs see what bash runs, builtins and unknown commands included", () => {
    expect(ranBy("ls|ls|ls\nrm -rf b&&ls; echo hi").sort()).toEqual([
      "echo\u001fhi",
      "ls",
      "ls",
      "ls",
      "ls",
      "rm\u001f-rf\u001fb"
    ])
  })

  it("bash runs nothing that was not approved", () => {
    let approved = 0
    fc.assert(
      fc.property(script, (text) => {
        if (!approves(rules, ["bash", "-c", text])) return
        approved++
        const allowed = analyzeCommand(shell, ["bash", "-c", text]).leaves.map((argv) => argv.join("\u001f"))
        for (const ran of ranBy(text))
          expect(allowed, `${JSON.stringify(text)} ran ${JSON.stringify(ran)}`).toContain(ran)
      }),
      // A fixed seed: the share of generated scripts that are approved (and so checked) must not vary.
      { numRuns: 60, seed: 20261130 }
    )
    expect(approved).toBeGreaterThan(10)
  }, 60_000)
})
