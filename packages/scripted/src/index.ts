/** @deputy/scripted: the in-process scripted backend. */
export {}
