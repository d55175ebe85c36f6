export { RuntimeError, type RuntimeErrorCode } from "./errors.js";
export type { ContainerInspect } from "./inspect.js";
export { createRuntime, type Runtime, type RuntimeOptions } from "./runtime.js";
export type {
  CloseOptions,
  ContainerRecord,
  ContainerSpec,
  ContainerStatus,
  ExecOptions,
  ExecProcess,
  ListOptions,
  LogEntry,
  LogsOptions,
  MountSpec,
  NetworkMode,
  RemoveOptions,
  ResolvedProcess,
  RestartPolicy,
  RestartPolicyName,
  RuntimeEvent,
  RuntimeEventType,
  SeccompChanges,
  StopOptions,
  UsernsMapping,
} from "./types.js";
