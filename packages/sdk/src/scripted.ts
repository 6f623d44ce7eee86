/** The Effect API of @deputy/scripted, re-exported: install @deputy/sdk alone and import it from here. */
export * from "@deputy/scripted"
