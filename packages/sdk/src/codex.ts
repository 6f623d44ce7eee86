/** The Effect API of @deputy/codex, re-exported: install @deputy/sdk alone and import it from here. */
export * from "@deputy/codex"
