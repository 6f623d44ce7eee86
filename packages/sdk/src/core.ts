/** The Effect API of @deputy/core, re-exported: install @deputy/sdk alone and import it from here. */
export * from "@deputy/core"
