/** Splits a shell command line into words, the way a POSIX shell would for simple commands. */

/**
 * The words of `command`: whitespace separates, single quotes are literal, double quotes allow `\"`
 * `\\` `\$` `` \` `` escapes, a backslash outside quotes escapes the next character. Operators
 * (`|`, `>`, `&&`) stay words of their own or glued to neighbours, as written. Unbalanced quotes
 * give the whole command as one word. Never returns an empty array for a non-blank command.
 */
export const shellWords = (command: string): Array<string> => {
  const words: Array<string> = []
  let word = ""
  let inWord = false
  let quote: "'" | '"' | undefined
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!
    if (quote === "'") {
      if (c === "'") quote = undefined
      else word += c
    } else if (quote === '"') {
      if (c === '"') quote = undefined
      else if (c === "\\" && i + 1 < command.length && '"\\$`'.includes(command[i + 1]!)) word += command[++i]
      else word += c
    } else if (c === "'" || c === '"') {
      quote = c
      inWord = true
    } else if (c === "\\" && i + 1 < command.length) {
      word += command[++i]
      inWord = true
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word)
      word = ""
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (quote !== undefined) return command.trim() === "" ? [] : [command.trim()]
  if (inWord) words.push(word)
  return words
}
