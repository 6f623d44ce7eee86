/** The Effect API of @deputy/protocol, re-exported: install @deputy/sdk alone and import it from here. */
export * from "@deputy/protocol"
