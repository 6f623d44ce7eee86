/** @deputy/codex: the Codex backends. */
export {}
