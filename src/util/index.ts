export { abortReason, sleep, throwIfAborted } from "./abort.js";
export { ArcaError, type ErrorKind, errorMessage, findArcaError } from "./errors.js";
