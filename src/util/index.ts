export { abortReason, sleep, throwIfAborted } from "./abort.js";
export { ArcaError, CodedError, type ErrorKind, errorMessage, findArcaError } from "./errors.js";
