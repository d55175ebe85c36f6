export { formatHostPort, type ParsedAddress, parseAddress } from "./address.js";
export {
  type BackoffAttempt,
  type BackoffOptions,
  connectWithBackoff,
  DEFAULT_BACKOFF_DELAYS_MS,
} from "./backoff.js";
export { type Dialer, type DialOptions, parseDialAddress, type VsockBridge } from "./dialer.js";
export { TransportError, type TransportErrorCode, toTransportError } from "./errors.js";
export { closeHttpServer, type ListenOptions, listen } from "./listen.js";
export { readTlsFiles, type TlsFiles, type TlsMaterial } from "./tls-files.js";
