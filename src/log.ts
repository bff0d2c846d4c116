/**
 * The agent's structured log: an event name and its fields, written as one JSON line by the
 * composition root. Library layers take one as a parameter; they never pick where it goes.
 */
export type Logger = (event: string, fields: Record<string, unknown>) => void;
