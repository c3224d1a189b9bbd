/** The shared empty field set: most sessions and subscriptions have no extra, authorizer or auth fields. */
export const NO_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({});
